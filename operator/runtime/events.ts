// Kubernetes events through the events.k8s.io/v1 API; `kubectl describe`
// shows them. Identical events for one object within ten minutes are sent
// once, so a failing reconcile that retries does not flood the apiserver.
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { KubeClient } from "./kube-client.ts";
import { microTime } from "./time.ts";

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

const DEDUP_WINDOW_MS = 10 * 60_000;

export class EventRecorder {
  private readonly recent = new Map<string, number>();

  private readonly client: KubeClient;
  private readonly controller: string;
  private readonly instance: string;
  private readonly log: Logger;

  constructor(client: KubeClient, controller: string, instance: string, log: Logger) {
    this.client = client;
    this.controller = controller;
    this.instance = instance;
    this.log = log;
  }

  normal(target: EventTarget, reason: string, note: string, action = "Reconcile"): void {
    this.emit(target, "Normal", reason, note, action);
  }

  warning(target: EventTarget, reason: string, note: string, action = "Reconcile"): void {
    this.emit(target, "Warning", reason, note, action);
  }

  private emit(
    target: EventTarget,
    type: string,
    reason: string,
    note: string,
    action: string,
  ): void {
    const namespace = target.metadata.namespace ?? "default";
    const dedupKey = `${target.metadata.uid}|${type}|${reason}|${note}`;
    const now = Date.now();
    const last = this.recent.get(dedupKey);
    if (last !== undefined && now - last < DEDUP_WINDOW_MS) return;
    this.recent.set(dedupKey, now);
    if (this.recent.size > 10_000) {
      for (const [key, at] of this.recent) if (now - at >= DEDUP_WINDOW_MS) this.recent.delete(key);
    }
    const event = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: `${target.metadata.name}.${randomBytes(8).toString("hex")}`, namespace },
      eventTime: microTime(),
      reportingController: this.controller,
      reportingInstance: this.instance,
      action,
      reason,
      note: note.slice(0, 1024),
      type,
      regarding: {
        apiVersion: target.apiVersion,
        kind: target.kind,
        name: target.metadata.name,
        namespace,
        uid: target.metadata.uid,
        resourceVersion: target.metadata.resourceVersion,
      },
    };
    this.client
      .create(`/apis/events.k8s.io/v1/namespaces/${namespace}/events`, event)
      .catch((error: unknown) =>
        this.log.warn({ err: String(error), reason }, "could not record event"),
      );
  }
}
