// The imperative shell of load-aware starts: reads gated run pods from the
// pod cache, asks planStarts which may start, and removes their scheduling
// gate. Runs only on the leader, so the rate is cluster-wide.
import type { Logger } from "pino";
import { Gauge, Histogram, type Registry } from "prom-client";
import type { InformerGroup } from "../runtime/informer.ts";
import {
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
} from "../runtime/kube-client.ts";
import {
  planStarts,
  START_GATE,
  type StartBucket,
  type StartRate,
  type WaitingStart,
} from "./start-rate.ts";

/** What the pod cache keeps of a gated pod (see slimPod in manager.ts). */
interface GatedPod {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
  };
  spec?: { schedulingGates?: Array<{ name: string }>; priority?: number };
}

export function isGated(pod: GatedPod): boolean {
  return pod.spec?.schedulingGates?.some((g) => g.name === START_GATE) ?? false;
}

export class StartGate {
  private bucket?: StartBucket;
  private timer?: NodeJS.Timeout;
  private running = false;
  private again = false;
  private stopped = true;
  /** Released but not yet seen without the gate in the cache. */
  private readonly releasing = new Set<string>();
  private readonly waitingGauge: Gauge;
  private readonly delay: Histogram;

  private readonly client: KubeClient;
  private readonly pods: InformerGroup<KubeObject>;
  private readonly limit: StartRate;
  private readonly log: Logger;

  constructor(
    client: KubeClient,
    pods: InformerGroup<KubeObject>,
    limit: StartRate,
    registry: Registry,
    log: Logger,
  ) {
    this.client = client;
    this.pods = pods;
    this.limit = limit;
    this.log = log;
    this.waitingGauge = new Gauge({
      name: "nightshift_runs_waiting_to_start",
      help: "Run pods held back by the cluster-wide start rate",
      registers: [registry],
    });
    this.delay = new Histogram({
      name: "nightshift_run_start_delay_seconds",
      help: "How long the start rate held back a run pod before letting it start",
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    });
  }

  start(): void {
    this.stopped = false;
    this.notify();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** A pod changed: look again soon (one pass at a time; changes during a pass trigger another). */
  notify(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), 0);
  }

  private async pass(): Promise<void> {
    this.running = true;
    this.again = false;
    let retryInMs: number | undefined;
    try {
      const gated = (this.pods.list() as unknown as GatedPod[]).filter(
        (p) => isGated(p) && !p.metadata.deletionTimestamp,
      );
      const gatedKeys = new Set(gated.map(podKey));
      for (const key of this.releasing) if (!gatedKeys.has(key)) this.releasing.delete(key);
      const waiting: WaitingStart[] = gated
        .filter((p) => !this.releasing.has(podKey(p)))
        .map((p) => ({
          key: podKey(p),
          priority: p.spec?.priority ?? 0,
          sinceMs: Date.parse(p.metadata.creationTimestamp ?? "") || 0,
        }));
      const now = Date.now();
      const plan = planStarts(waiting, this.bucket, now, this.limit);
      this.bucket = plan.bucket;
      retryInMs = plan.retryInMs;
      this.waitingGauge.set(waiting.length - plan.release.length);
      const byKey = new Map(gated.map((p) => [podKey(p), p]));
      await Promise.all(
        plan.release.map(async (run) => {
          const pod = byKey.get(run.key);
          if (!pod) return;
          this.releasing.add(run.key);
          try {
            await this.client.mergePatch(
              `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
              {
                metadata: { resourceVersion: pod.metadata.resourceVersion },
                spec: {
                  schedulingGates: (pod.spec?.schedulingGates ?? []).filter(
                    (g) => g.name !== START_GATE,
                  ),
                },
              },
            );
            this.delay.observe(Math.max(0, now - run.sinceMs) / 1000);
          } catch (error) {
            // Changed or gone meanwhile: the cache brings the newer pod, and the next pass decides again.
            this.releasing.delete(run.key);
            if (!isConflict(error) && !isNotFound(error))
              this.log.warn({ pod: run.key, err: error }, "could not release a run pod");
          }
        }),
      );
    } catch (error) {
      this.log.error({ err: error }, "start gate pass failed");
      retryInMs = 1000;
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.again) this.notify();
    else if (retryInMs !== undefined) this.timer = setTimeout(() => void this.pass(), retryInMs);
  }
}

function podKey(pod: GatedPod): string {
  return `${pod.metadata.namespace}/${pod.metadata.name}`;
}
