// The imperative shell of the BackgroundTask controller: read the caches,
// let the planner decide (plan.ts: the status and the ordered actions), and
// carry the actions out in order. When the apiserver refuses the desired
// CronJob, the refusal becomes an input and the task is planned once more.
import type { Logger } from "pino";
import { API_VERSION, type BackgroundTaskObject, KIND, PLURAL } from "../../crds/backgroundtask.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import type { EventRecorder } from "../runtime/events.ts";
import { type InformerGroup, objectKey } from "../runtime/informer.ts";
import {
  ApiError,
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
  METADATA_ACCEPT,
} from "../runtime/kube-client.ts";
import type { OwnEchoes } from "../runtime/own-echoes.ts";
import type { DeferralPolicy, QueueLoad } from "./deferral.ts";
import type { CronJobSettings } from "./desired-cronjob.ts";
import {
  cronJobName,
  FIELD_MANAGER,
  RECORDED_ANNOTATION,
  RUN_FINALIZER,
  TEMPLATE_HASH_ANNOTATION,
} from "./labels.ts";
import { type Action, type Observation, type Plan, plan, planForDeletedTask } from "./plan.ts";
import { withPriorityCheck } from "./queueing.ts";
import { type Rejection, rejectionFrom } from "./rejection.ts";
import type { CronJobTemplateSource } from "./run-jobs.ts";
import { circuitTransition, type RunMetrics } from "./run-metrics.ts";
import type { RunJob, RunPod } from "./runs.ts";
import { type LiveCronJob, taskAfterStatusWrite } from "./status.ts";
import { checkSpec, type SpecCheck, type ValidationContext, withReferences } from "./validate.ts";

export const JOBS_BY_TASK = "task";
export const PODS_BY_JOB = "job";

export interface ReconcilerDeps {
  client: KubeClient;
  tasks: InformerGroup<KubeObject>;
  cronJobs: InformerGroup<KubeObject>;
  /** CronJobs this reconciler applied: their watch events need no reconcile of their own. */
  appliedCronJobs?: OwnEchoes;
  /** Run Jobs, indexed by task key (JOBS_BY_TASK). */
  jobs: InformerGroup<KubeObject>;
  /** Run pods, indexed by namespace/job name (PODS_BY_JOB). */
  pods: InformerGroup<KubeObject>;
  references: ValidationContext;
  events: EventRecorder;
  settings: CronJobSettings;
  log: Logger;
  /** Tells the manager which Secrets/ConfigMaps a task depends on, so their changes re-queue it. */
  trackReferences: (taskKey: string, namespace: string, references: string[]) => void;
  now?: () => Date;
  runMetrics?: RunMetrics;
  /** Deferral of low-priority runs while their Kueue queue is saturated; off when undefined. */
  deferral?: {
    policy: DeferralPolicy;
    /** Load of a LocalQueue, undefined when unknown. */
    load: (namespace: string, queueName: string) => QueueLoad | undefined;
    onDecision: (taskKey: string, deferred: boolean) => void;
  };
}

type Outcome =
  | { kind: "done" }
  | { kind: "rejected"; rejection: Rejection }
  | { kind: "conflict" }
  | { kind: "gone" };

/** Bounded: at 10,000 tasks, keeping every check would cost more memory than it saves work. */
const SPEC_CHECKS_KEPT = 1000;

const STRATEGIC_MERGE = "application/strategic-merge-patch+json";

export class BackgroundTaskReconciler {
  private readonly deps: ReconcilerDeps;
  /** The apiserver's refusals of a task's desired CronJob, by task UID (see rejection.ts). */
  private readonly rejections = new Map<string, Rejection>();
  /** Spec checks of recently reconciled generations, by task UID: a task is reconciled again soon after a change (its CronJob, its runs). */
  private readonly specChecks = new Map<string, { generation?: number; check: SpecCheck }>();

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  reconcile = async (key: string): Promise<ReconcileResult | undefined> => {
    const { tasks, log } = this.deps;
    const cached = tasks.get(key);
    const jobs = this.deps.jobs.byIndex(JOBS_BY_TASK, key) as unknown as RunJob[];
    const namespace = key.split("/")[0] ?? "";
    if (!cached || cached.metadata.deletionTimestamp) {
      this.deps.runMetrics?.forget(namespace, key.split("/")[1] ?? "");
      // The task is gone: its runs can no longer be recorded anywhere, so let them go.
      if (cached?.metadata.uid) this.rejections.delete(cached.metadata.uid);
      await this.execute(namespace, undefined, planForDeletedTask(jobs));
      return undefined;
    }
    const task = cached as unknown as BackgroundTaskObject;
    const validation = withPriorityCheck(
      withReferences(this.specCheck(task), namespace, this.deps.references),
      this.deps.settings,
    );
    this.deps.trackReferences(key, namespace, validation.references);
    let rejection = this.rejections.get(task.metadata.uid);
    if (rejection && rejection.generation !== task.metadata.generation) {
      this.rejections.delete(task.metadata.uid);
      rejection = undefined;
    }
    const observation: Observation = {
      task,
      validation,
      jobs,
      podsOf: (job) => this.podsOf(namespace, job),
      cronJob: this.deps.cronJobs.get(
        `${namespace}/${cronJobName(task.metadata.name)}`,
      ) as unknown as (LiveCronJob & CronJobTemplateSource) | undefined,
      settings: this.deps.settings,
      now: this.deps.now?.() ?? new Date(),
    };
    const queueName = validation.valid ? validation.spec.queueName : undefined;
    if (this.deps.deferral)
      observation.deferral = {
        policy: this.deps.deferral.policy,
        load: queueName ? this.deps.deferral.load(namespace, queueName) : undefined,
      };
    // At most twice: once more when the apiserver refuses the CronJob.
    for (;;) {
      const decided = plan({ ...observation, ...(rejection ? { rejection } : {}) });
      const outcome = await this.execute(namespace, task, decided.actions);
      if (outcome.kind === "rejected" && !rejection) {
        rejection = outcome.rejection;
        this.rejections.set(task.metadata.uid, rejection);
        log.info({ key, field: rejection.field }, "CronJob refused by the apiserver");
        continue;
      }
      if (outcome.kind === "gone") return undefined;
      // Changed meanwhile: nothing recorded this round; retry on the newer task once the cache has it.
      if (outcome.kind === "conflict") return { requeueAfterMs: 200 };
      this.observe(task, decided);
      if (decided.deferred !== undefined) this.deps.deferral?.onDecision(key, decided.deferred);
      return decided.requeueAfterMs !== undefined
        ? { requeueAfterMs: decided.requeueAfterMs }
        : undefined;
    }
  };

  private specCheck(task: BackgroundTaskObject): SpecCheck {
    const { uid, generation } = task.metadata;
    const kept = this.specChecks.get(uid);
    this.specChecks.delete(uid); // re-inserted last: the map stays in order of use
    const check =
      kept && kept.generation === generation ? kept.check : checkSpec(task, this.deps.references);
    this.specChecks.set(uid, { generation, check });
    if (this.specChecks.size > SPEC_CHECKS_KEPT)
      this.specChecks.delete(this.specChecks.keys().next().value as string);
    return check;
  }

  /** Carries the actions out in order; stops at the first that makes the rest wrong. */
  private async execute(
    namespace: string,
    task: BackgroundTaskObject | undefined,
    actions: Action[],
  ): Promise<Outcome> {
    const { client, events, log } = this.deps;
    const target = task
      ? { apiVersion: API_VERSION, kind: KIND, metadata: task.metadata }
      : undefined;
    for (const action of actions) {
      switch (action.kind) {
        case "addFinalizer":
          // Strategic merge adds to the finalizer list without a resourceVersion: no conflicts with other writers.
          await this.patchJob(namespace, action.job, {
            metadata: { uid: action.job.metadata.uid, finalizers: [RUN_FINALIZER] },
          });
          break;
        case "releaseJob":
          await this.patchJob(namespace, action.job, {
            metadata: {
              uid: action.job.metadata.uid,
              "$deleteFromPrimitiveList/finalizers": [RUN_FINALIZER],
              ...(action.recorded ? { annotations: { [RECORDED_ANNOTATION]: "true" } } : {}),
            },
          });
          break;
        case "applyCronJob":
          try {
            // Only its name and version are read: a metadata answer spares encoding and parsing the spec.
            const applied = await client.apply<KubeObject>(
              `/apis/batch/v1/namespaces/${namespace}/cronjobs/${action.cronJob.metadata.name}`,
              action.cronJob,
              FIELD_MANAGER,
              METADATA_ACCEPT,
            );
            this.deps.appliedCronJobs?.expect(objectKey(applied), applied.metadata.resourceVersion);
            log.info(
              { task: `${namespace}/${task?.metadata.name}`, why: action.why },
              "applied CronJob",
            );
          } catch (error) {
            const rejection =
              error instanceof ApiError
                ? rejectionFrom(
                    error,
                    task?.metadata.generation,
                    action.cronJob.metadata.annotations[TEMPLATE_HASH_ANNOTATION] ?? "",
                  )
                : undefined;
            if (rejection) return { kind: "rejected", rejection };
            throw error;
          }
          break;
        case "createJob":
          try {
            await client.create(`/apis/batch/v1/namespaces/${namespace}/jobs`, action.body);
          } catch (error) {
            if (!(error instanceof ApiError && error.statusCode === 409)) throw error; // 409: started before a crash
          }
          break;
        case "writeStatus": {
          if (!task) break;
          try {
            const answer = await client.mergePatch<Pick<BackgroundTaskObject, "metadata">>(
              `/apis/${API_VERSION}/namespaces/${namespace}/${PLURAL}/${task.metadata.name}/status`,
              {
                metadata: { resourceVersion: task.metadata.resourceVersion },
                status: action.patch,
              },
              METADATA_ACCEPT,
            );
            this.deps.tasks.recordWrite(
              taskAfterStatusWrite(task, answer.metadata, action.status) as unknown as KubeObject,
              task.metadata.resourceVersion ?? "",
            );
          } catch (error) {
            if (isNotFound(error)) return { kind: "gone" };
            if (isConflict(error)) return { kind: "conflict" };
            throw error;
          }
          break;
        }
        case "deleteJob":
          try {
            await client.delete(
              `/apis/batch/v1/namespaces/${namespace}/jobs/${action.job.metadata.name}`,
              {
                kind: "DeleteOptions",
                apiVersion: "v1",
                propagationPolicy: "Background",
                preconditions: { uid: action.job.metadata.uid },
              },
            );
          } catch (error) {
            if (!isNotFound(error) && !isConflict(error)) throw error;
          }
          break;
        case "event":
          if (!target) break;
          if (action.type === "Warning")
            events.warning(target, action.reason, action.message, action.action);
          else events.normal(target, action.reason, action.message, action.action);
          break;
      }
    }
    return { kind: "done" };
  }

  /** Metrics of what a carried-out plan recorded and started. */
  private observe(task: BackgroundTaskObject, decided: Plan): void {
    const metrics = this.deps.runMetrics;
    if (!metrics) return;
    const { namespace, name } = task.metadata;
    for (const run of decided.recorded) metrics.observeRunFinished(namespace, name, run);
    for (const action of decided.actions)
      if (action.kind === "createJob" && action.runKind === "retry")
        metrics.retryStarted(namespace, name);
    const moved = circuitTransition(task.status?.circuit, decided.status.circuit);
    if (moved) metrics.circuitTransition(namespace, name, moved);
  }

  private podsOf(namespace: string, job: RunJob): RunPod[] {
    return this.deps.pods.byIndex(
      PODS_BY_JOB,
      `${namespace}/${job.metadata.name}`,
    ) as unknown as RunPod[];
  }

  private async patchJob(namespace: string, job: RunJob, patch: unknown): Promise<void> {
    try {
      const written = await this.deps.client.request<KubeObject>(
        "patch",
        "PATCH",
        `/apis/batch/v1/namespaces/${namespace}/jobs/${job.metadata.name}`,
        patch,
        STRATEGIC_MERGE,
      );
      // Until the watch delivers it, the next reconcile sees the Job held or released already,
      // instead of holding or releasing it a second time.
      this.deps.jobs.recordWrite(written, job.metadata.resourceVersion ?? "");
    } catch (error) {
      // Gone already, replaced by a Job of the same name (uid differs: 409/422), or being deleted
      // (no new finalizers allowed: 422): either way there is nothing to hold or release.
      if (
        !isNotFound(error) &&
        !isConflict(error) &&
        !(error instanceof ApiError && error.statusCode === 422)
      )
        throw error;
    }
  }
}
