// The imperative shell of the BackgroundTask controller: read the caches,
// decide with the pure functions (validate, runs, circuit, retry,
// desiredCronJob, computeStatus), then write in an order that never loses or
// double-counts a run:
//   1. put the run finalizer on new run Jobs;
//   2. apply the CronJob and start operator-initiated runs (idempotent names);
//   3. write status — counters and recorded Job UIDs together, guarded by the
//      task's resourceVersion;
//   4. only then mark recorded Jobs and drop their finalizer, prune history,
//      and send events.
// A crash between any two steps repeats the later ones harmlessly.
import type { Logger } from "pino";
import {
  API_VERSION,
  type BackgroundTaskObject,
  type BackgroundTaskSpec,
  type BackgroundTaskStatus,
  KIND,
  PLURAL,
} from "../../crds/backgroundtask.ts";
import type { ReconcileResult } from "../runtime/controller.ts";
import type { EventRecorder } from "../runtime/events.ts";
import type { InformerGroup } from "../runtime/informer.ts";
import {
  ApiError,
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
} from "../runtime/kube-client.ts";
import { isoSeconds as iso } from "../runtime/time.ts";
import { type Circuit, circuitAfterRuns, isOpen, trialDueAt } from "./circuit.ts";
import { type DeferralPolicy, decideDeferral, deferralStatus, type QueueLoad } from "./deferral.ts";
import { type CronJobSettings, cronJobDrift, desiredCronJob } from "./desired-cronjob.ts";
import {
  cronJobName,
  FIELD_MANAGER,
  RECORDED_ANNOTATION,
  RESET_CIRCUIT_ANNOTATION,
  RUN_FINALIZER,
  RUN_NOW_ANNOTATION,
} from "./labels.ts";
import { isQueued, queuedSince, withPriorityCheck } from "./queueing.ts";
import { planRetry } from "./retry.ts";
import { type CronJobTemplateSource, type RunKind, runJob, runJobName } from "./run-jobs.ts";
import {
  awaitingPods,
  type FinishedRun,
  finishedRun,
  hasFinalizer,
  isRecorded,
  type RunJob,
  type RunPod,
  recordRuns,
  runKind,
} from "./runs.ts";
import { nextScheduleTime } from "./schedule.ts";
import { computeStatus, type LiveCronJob, statusPatch } from "./status.ts";
import { type ReferenceLookup, validateTask } from "./validate.ts";

export const JOBS_BY_TASK = "task";
export const PODS_BY_JOB = "job";

export interface ReconcilerDeps {
  client: KubeClient;
  tasks: InformerGroup<KubeObject>;
  cronJobs: InformerGroup<KubeObject>;
  /** Run Jobs, indexed by task key (JOBS_BY_TASK). */
  jobs: InformerGroup<KubeObject>;
  /** Run pods, indexed by namespace/job name (PODS_BY_JOB). */
  pods: InformerGroup<KubeObject>;
  references: ReferenceLookup;
  events: EventRecorder;
  settings: CronJobSettings;
  log: Logger;
  /** Tells the manager which Secrets/ConfigMaps a task depends on, so their changes re-queue it. */
  trackReferences: (taskKey: string, namespace: string, references: string[]) => void;
  now?: () => Date;
  random?: () => number;
  /** Deferral of low-priority runs while their Kueue queue is saturated; off when undefined. */
  deferral?: {
    policy: DeferralPolicy;
    /** Load of a LocalQueue, undefined when unknown. */
    load: (namespace: string, queueName: string) => QueueLoad | undefined;
    onDecision: (taskKey: string, deferred: boolean) => void;
  };
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
    const jobs = this.deps.jobs.byIndex(JOBS_BY_TASK, key) as unknown as RunJob[];
    if (!cached || cached.metadata.deletionTimestamp) {
      // The task is gone: its runs can no longer be recorded anywhere, so let them go.
      await Promise.all(
        jobs
          .filter(hasFinalizer)
          .map((job) => this.releaseJob(key.split("/")[0] ?? "", job, false)),
      );
      return undefined;
    }
    const task = cached as unknown as BackgroundTaskObject;
    const { namespace, name } = task.metadata;
    const now = this.deps.now?.() ?? new Date();
    const random = this.deps.random ?? Math.random;
    const target = { apiVersion: API_VERSION, kind: KIND, metadata: task.metadata };
    const annotations = task.metadata.annotations ?? {};

    const validation = withPriorityCheck(
      validateTask(task, this.deps.references),
      this.deps.settings,
    );
    this.deps.trackReferences(key, namespace, validation.references);
    const previousValid = task.status?.conditions?.find((c) => c.type === "SpecValid");
    if (
      !validation.valid &&
      (previousValid?.status !== "False" || previousValid.message !== validation.message)
    ) {
      events.warning(target, validation.reason, validation.message);
    }
    const valid = validation.valid ? validation : undefined;
    const spec: BackgroundTaskSpec | undefined = valid?.spec;

    // 1. Every run Job carries the finalizer from first sight until it is recorded.
    // Unrecorded Jobs are either still running or finished and about to be recorded;
    // for finished ones, wait briefly for their pods' exit codes.
    let requeueMs: number | undefined;
    const activeJobs: RunJob[] = [];
    const finished: FinishedRun[] = [];
    for (const job of jobs) {
      if (isRecorded(job, task.status)) continue;
      if (!hasFinalizer(job) && !job.metadata.deletionTimestamp)
        await this.addFinalizer(namespace, job);
      const run = finishedRun(job, this.podsOf(namespace, job));
      if (!run) activeJobs.push(job);
      else if (awaitingPods(run, now)) requeueMs = 500;
      else finished.push(run);
    }
    const accounting = recordRuns(task.status ?? {}, finished, jobs);
    const state: BackgroundTaskStatus = accounting.status;
    const lastOutcome = accounting.recorded.at(-1)?.outcome;
    if (lastOutcome === "Succeeded") delete state.retry;

    // Circuit breaker: a user reset wins, then the runs just recorded decide.
    const circuitBefore = state.circuit;
    let circuit: Circuit | undefined = state.circuit;
    const resetValue = annotations[RESET_CIRCUIT_ANNOTATION];
    let reset = false;
    if (resetValue && resetValue !== circuit?.lastResetValue) {
      reset = isOpen(circuit);
      circuit = { state: "Closed", lastResetValue: resetValue };
      state.consecutiveFailures = 0;
    }
    if (spec)
      circuit = circuitAfterRuns(spec, circuit, state.consecutiveFailures ?? 0, lastOutcome, now);
    if (circuit) state.circuit = circuit;
    else delete state.circuit;

    // Low-priority runs wait (the schedule is held) while their queue is saturated.
    const deferral =
      spec && this.deps.deferral
        ? decideDeferral({
            priority: spec.priority,
            queueName: spec.queueName,
            load: spec.queueName ? this.deps.deferral.load(namespace, spec.queueName) : undefined,
            deferredSince: state.deferral?.since,
            now,
            policy: this.deps.deferral.policy,
          })
        : undefined;
    if (deferral) {
      state.deferral = deferralStatus(deferral);
      this.deps.deferral?.onDecision(key, deferral.deferred);
      if (deferral.deferred)
        requeueMs = Math.min(requeueMs ?? Infinity, deferral.reviewInMs + 1000);
    }

    // 2. The CronJob, suspended while the circuit is open or runs are deferred.
    let live = cronJobs.get(`${namespace}/${cronJobName(name)}`) as unknown as
      | (LiveCronJob & CronJobTemplateSource)
      | undefined;
    let upToDate = false;
    if (valid) {
      const desired = desiredCronJob(
        task,
        valid,
        this.deps.settings,
        isOpen(state.circuit) || deferral?.deferred === true,
      );
      const drift = cronJobDrift(desired, live as never);
      upToDate = drift === undefined;

      if (!upToDate) {
        live = await client.apply(
          `/apis/batch/v1/namespaces/${namespace}/cronjobs/${desired.metadata.name}`,
          desired,
          FIELD_MANAGER,
        );
        upToDate = true;
        log.info({ key, cronJob: desired.metadata.name, why: drift }, "applied CronJob");
        // Creation and spec changes are visible in status; someone else's edit or deletion deserves an event.
        if (drift?.startsWith("drift") || (drift === "missing" && task.status?.cronJobName)) {
          events.normal(
            target,
            "CronJobRepaired",
            `CronJob ${desired.metadata.name} restored (${drift})`,
          );
        }
      }
    }
    const started: Array<{ name: string; kind: RunKind }> = [];
    const startRun = async (kind: RunKind, seed: string): Promise<string | undefined> => {
      if (!live) return undefined;
      const jobName = runJobName(live.metadata.name, kind, seed);
      try {
        await client.create(
          `/apis/batch/v1/namespaces/${namespace}/jobs`,
          runJob(live, jobName, kind),
        );
      } catch (error) {
        if (!(error instanceof ApiError && error.statusCode === 409)) throw error; // 409: started before a crash
      }
      state.lastScheduleTime = iso(now);
      started.push({ name: jobName, kind });
      return jobName;
    };

    if (valid && spec && live) {
      const next =
        spec.suspend || isOpen(state.circuit)
          ? undefined
          : nextScheduleTime(valid.schedule, valid.timeZone, now);
      // Run now: one run per distinct annotation value; while open, it is the trial.
      const runNow = annotations[RUN_NOW_ANNOTATION];
      if (runNow && runNow !== state.lastRunNowValue) {
        const jobName = await startRun("manual", `${task.metadata.uid}/${runNow}`);
        state.lastRunNowValue = runNow;
        if (jobName && state.circuit?.state === "Open")
          state.circuit = { ...state.circuit, state: "HalfOpen", trialJobName: jobName };
      }
      // Half-open: one trial run after the cooldown (never while the user suspends the task).
      const due = state.circuit ? trialDueAt(state.circuit) : undefined;
      if (state.circuit && due && !spec.suspend) {
        if (now >= due) {
          const jobName = await startRun("trial", `${task.metadata.uid}/${state.circuit.openedAt}`);
          if (jobName)
            state.circuit = { ...state.circuit, state: "HalfOpen", trialJobName: jobName };
        } else {
          requeueMs = Math.min(
            requeueMs ?? Number.POSITIVE_INFINITY,
            due.getTime() - now.getTime() + 100,
          );
        }
      }
      // Delayed retry after a failure recorded now; then start it when due.
      const lastFailure = accounting.failures.at(-1);
      if (lastFailure && lastOutcome === "Failed") {
        const planned = planRetry(
          spec,
          runKind(lastFailure.job),
          state.retry,
          new Date(lastFailure.finishedAt),
          next,
          random,
        );
        if (planned) state.retry = planned;
        else delete state.retry;
      }
      const retry = state.retry;
      if (retry?.nextRetryTime && isOpen(state.circuit)) {
        delete state.retry; // the breaker takes over from retries
      } else if (retry?.nextRetryTime && !spec.suspend) {
        const retryAt = Date.parse(retry.nextRetryTime);
        const blocked =
          spec.concurrencyPolicy !== "Allow" && (activeJobs.length > 0 || started.length > 0);
        if (now.getTime() >= retryAt && !blocked) {
          const jobName = await startRun(
            "retry",
            `${task.metadata.uid}/${retry.nextRetryTime}/${retry.attempt}`,
          );
          state.retry = { attempt: retry.attempt + 1, ...(jobName ? { jobName } : {}) };
        } else {
          requeueMs = Math.min(
            requeueMs ?? Number.POSITIVE_INFINITY,
            Math.max(500, retryAt - now.getTime()),
          );
        }
      }
    }

    // 3. Status: counters and recorded UIDs in one write, guarded by resourceVersion.
    const activeRuns = [
      ...activeJobs.map((j) => ({
        name: j.metadata.name,
        ...(j.status?.startTime ? { startTime: j.status.startTime } : {}),
        ...(isQueued(j) ? { queuedSince: queuedSince(j) } : {}),
      })),
      ...started
        .filter((s) => !activeJobs.some((j) => j.metadata.name === s.name))
        .map((s) => ({ name: s.name })),
    ].sort((a, b) => a.name.localeCompare(b.name));
    const status = computeStatus({
      task,
      validation,
      cronJob: live,
      cronJobUpToDate: upToDate,
      now,
      runState: state,
      activeRuns,
    });
    const patch = statusPatch(task.status, status);
    if (patch) {
      try {
        const written = await client.mergePatch<KubeObject>(
          `/apis/${API_VERSION}/namespaces/${namespace}/${PLURAL}/${name}/status`,
          {
            metadata: { resourceVersion: task.metadata.resourceVersion },
            status: patch,
          },
        );
        tasks.recordWrite(written, task.metadata.resourceVersion ?? "");
      } catch (error) {
        if (isNotFound(error)) return undefined;
        // Changed meanwhile: nothing recorded this round; retry on the newer task once the cache has it.
        if (isConflict(error)) return { requeueAfterMs: 200 };
        throw error;
      }
    }

    // 4. Recorded: mark the Jobs, release them, prune history, tell the user.
    // Also Jobs recorded by an earlier round whose release did not happen (crash, conflict).
    const recordedUids = new Set(status.recordedJobs ?? []);
    for (const job of jobs) {
      const marked = job.metadata.annotations?.[RECORDED_ANNOTATION] === "true";
      const recorded = marked || recordedUids.has(job.metadata.uid);
      if (recorded && (!marked || hasFinalizer(job))) await this.releaseJob(namespace, job, true);
    }
    for (const run of accounting.failures) {
      const code = run.exitCode !== undefined ? ` with exit code ${run.exitCode}` : "";
      events.warning(
        target,
        "RunFailed",
        `Run ${run.job.metadata.name} failed${code}${run.reason ? ` (${run.reason})` : ""}${run.message ? `: ${run.message.slice(0, 200)}` : ""}`,
        "Run",
      );
    }
    if (accounting.recovered)
      events.normal(
        target,
        "Recovered",
        `Run ${accounting.recorded.at(-1)?.job.metadata.name} succeeded after failures`,
        "Run",
      );
    for (const s of started)
      events.normal(target, "RunStarted", `Started ${s.kind} run ${s.name}`, "Run");
    const circuitNow = status.circuit;
    if (
      circuitNow?.state === "Open" &&
      (circuitBefore?.state !== "Open" || circuitBefore.openedAt !== circuitNow.openedAt)
    ) {
      events.warning(
        target,
        "CircuitOpened",
        `${status.consecutiveFailures ?? 0} consecutive failed runs: schedule suspended; trial run in ${circuitNow.cooldownSeconds}s`,
      );
    }
    if (isOpen(circuitBefore) && !isOpen(circuitNow)) {
      events.normal(
        target,
        reset ? "CircuitReset" : "CircuitClosed",
        reset
          ? "Circuit closed by the reset-circuit annotation"
          : "Trial run succeeded: schedule resumed",
      );
    }
    if (spec)
      await this.pruneHistory(
        namespace,
        spec,
        jobs,
        new Set(accounting.recorded.map((r) => r.job.metadata.uid)),
      );

    let wait = requeueMs ?? Number.POSITIVE_INFINITY;
    if (status.nextScheduleTime) {
      wait = Math.min(wait, Date.parse(status.nextScheduleTime) - now.getTime() + 1000);
    }
    return Number.isFinite(wait)
      ? { requeueAfterMs: Math.min(MAX_REQUEUE_MS, Math.max(100, wait)) }
      : undefined;
  };

  private podsOf(namespace: string, job: RunJob): RunPod[] {
    return this.deps.pods.byIndex(
      PODS_BY_JOB,
      `${namespace}/${job.metadata.name}`,
    ) as unknown as RunPod[];
  }

  private jobPath(namespace: string, name: string): string {
    return `/apis/batch/v1/namespaces/${namespace}/jobs/${name}`;
  }

  private async addFinalizer(namespace: string, job: RunJob): Promise<void> {
    try {
      await this.deps.client.mergePatch(this.jobPath(namespace, job.metadata.name), {
        metadata: {
          uid: job.metadata.uid,
          resourceVersion: job.metadata.resourceVersion,
          finalizers: [...(job.metadata.finalizers ?? []), RUN_FINALIZER],
        },
      });
    } catch (error) {
      // Gone already, or changed under us (the next event retries): either way nothing to hold.
      if (
        !isNotFound(error) &&
        !isConflict(error) &&
        !(error instanceof ApiError && error.statusCode === 422)
      )
        throw error;
    }
  }

  /** Drops the finalizer; with `recorded`, also marks the Job so it is never counted again. */
  private async releaseJob(namespace: string, job: RunJob, recorded: boolean): Promise<void> {
    const finalizers = (job.metadata.finalizers ?? []).filter((f) => f !== RUN_FINALIZER);
    if (!recorded && finalizers.length === (job.metadata.finalizers ?? []).length) return;
    try {
      await this.deps.client.mergePatch(this.jobPath(namespace, job.metadata.name), {
        metadata: {
          uid: job.metadata.uid,
          resourceVersion: job.metadata.resourceVersion,
          finalizers: finalizers.length ? finalizers : null,
          ...(recorded ? { annotations: { [RECORDED_ANNOTATION]: "true" } } : {}),
        },
      });
    } catch (error) {
      if (!isNotFound(error) && !isConflict(error)) throw error;
    }
  }

  /** Keeps the newest recorded runs per outcome up to the task's history limits; deletes the rest. */
  private async pruneHistory(
    namespace: string,
    spec: BackgroundTaskSpec,
    jobs: RunJob[],
    justRecorded: Set<string>,
  ): Promise<void> {
    const done = jobs
      .filter(
        (j) =>
          !j.metadata.deletionTimestamp &&
          (j.metadata.annotations?.[RECORDED_ANNOTATION] === "true" ||
            justRecorded.has(j.metadata.uid)),
      )
      .map((j) => finishedRun(j, []))
      .filter((r): r is FinishedRun => r !== undefined)
      .sort((a, b) => b.finishedAt.localeCompare(a.finishedAt));
    const excess = [
      ...done.filter((r) => r.outcome === "Succeeded").slice(spec.successfulRunsHistoryLimit),
      ...done.filter((r) => r.outcome === "Failed").slice(spec.failedRunsHistoryLimit),
    ];
    for (const run of excess) {
      try {
        await this.deps.client.delete(this.jobPath(namespace, run.job.metadata.name), {
          kind: "DeleteOptions",
          apiVersion: "v1",
          propagationPolicy: "Background",
          preconditions: { uid: run.job.metadata.uid },
        });
      } catch (error) {
        if (!isNotFound(error) && !isConflict(error)) throw error;
      }
    }
  }
}
