// The imperative shell of the BackgroundTask controller: read the caches,
// decide with the pure functions (validate, desiredCronJob, computeStatus),
// apply the CronJob when it differs, write status only when it changed.
import type { Logger } from "pino";
import { API_VERSION, type BackgroundTaskObject, KIND, PLURAL } from "../../crds/backgroundtask.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import type { EventRecorder } from "../runtime/events.ts";
import type { Informer } from "../runtime/informer.ts";
import {
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
} from "../runtime/kube-client.ts";
import { type CronJobSettings, cronJobDrift, desiredCronJob } from "./desired-cronjob.ts";
import { cronJobName, FIELD_MANAGER } from "./labels.ts";
import { computeStatus, type LiveCronJob, statusPatch } from "./status.ts";
import { type ReferenceLookup, validateTask } from "./validate.ts";

export interface ReconcilerDeps {
  client: KubeClient;
  tasks: Informer<KubeObject>;
  cronJobs: Informer<KubeObject>;
  references: ReferenceLookup;
  events: EventRecorder;
  settings: CronJobSettings;
  log: Logger;
  /** Tells the manager which Secrets/ConfigMaps a task depends on, so their changes re-queue it. */
  trackReferences: (taskKey: string, namespace: string, references: string[]) => void;
  now?: () => Date;
}

const MAX_REQUEUE_MS = 6 * 3_600_000;

export class BackgroundTaskReconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  reconcile = async (key: string): Promise<ReconcileResult | undefined> => {
    const { client, tasks, cronJobs, events, log } = this.deps;
    const cached = tasks.get(key);
    if (!cached || cached.metadata.deletionTimestamp) return undefined; // the garbage collector removes the CronJob
    const task = cached as unknown as BackgroundTaskObject;
    const { namespace, name } = task.metadata;
    const now = this.deps.now?.() ?? new Date();

    const validation = validateTask(task, this.deps.references);
    this.deps.trackReferences(key, namespace, validation.references);
    const previousValid = task.status?.conditions?.find((c) => c.type === "SpecValid");
    if (!validation.valid) {
      if (previousValid?.status !== "False" || previousValid.message !== validation.message) {
        events.warning(this.eventTarget(task), validation.reason, validation.message);
      }
    }

    let live = cronJobs.get(`${namespace}/${cronJobName(name)}`) as unknown as
      | LiveCronJob
      | undefined;
    let upToDate = false;
    if (validation.valid) {
      const desired = desiredCronJob(
        task,
        validation,
        this.deps.settings,
        task.status?.circuit?.state === "Open",
      );
      const drift = cronJobDrift(desired, live as never);
      upToDate = drift === undefined;
      if (!upToDate) {
        const path = `/apis/batch/v1/namespaces/${namespace}/cronjobs/${desired.metadata.name}`;
        live = await client.apply<LiveCronJob>(path, desired, FIELD_MANAGER);
        upToDate = true;
        log.info({ key, cronJob: desired.metadata.name, why: drift }, "applied CronJob");
        if (!task.status?.cronJobName)
          events.normal(
            this.eventTarget(task),
            "CronJobCreated",
            `Created CronJob ${desired.metadata.name}`,
          );
      }
    }

    const status = computeStatus({
      task,
      validation,
      cronJob: live,
      cronJobUpToDate: upToDate,
      now,
    });
    const patch = statusPatch(task.status, status);
    if (patch) {
      try {
        await client.mergePatch(
          `/apis/${API_VERSION}/namespaces/${namespace}/${PLURAL}/${name}/status`,
          {
            metadata: { resourceVersion: task.metadata.resourceVersion },
            status: patch,
          },
        );
      } catch (error) {
        // Deleted meanwhile: nothing to do. Changed meanwhile: the cache catches up, then we retry.
        if (isNotFound(error)) return undefined;
        if (isConflict(error)) return { requeueAfterMs: 500 };
        throw error;
      }
    }
    if (status.nextScheduleTime) {
      const dueIn = Date.parse(status.nextScheduleTime) - now.getTime();
      return { requeueAfterMs: Math.min(MAX_REQUEUE_MS, Math.max(1000, dueIn + 1000)) };
    }
    return undefined;
  };

  private eventTarget(task: BackgroundTaskObject) {
    return { apiVersion: API_VERSION, kind: KIND, metadata: task.metadata };
  }
}
