// The BackgroundTask controller's one decision: from what was observed (the
// task, its run Jobs and their pods, its CronJob, the time) to the status the
// task should show and the ordered actions that get there. Pure: no I/O, no
// clock, no randomness, so deciding twice from the same observation decides
// the same — which is what makes a crash between any two actions harmless.
//
// The order of the actions is the accounting protocol:
//   1. hold every new run Job with the finalizer;
//   2. apply the CronJob and start the runs the operator starts (deterministic
//      names: a second attempt after a crash finds the Job already there);
//   3. write status — counters and recorded Job UIDs together, guarded by the
//      task's resourceVersion; nothing after this runs if it fails;
//   4. release recorded Jobs (annotation + finalizer removal), prune history,
//      send events.
import type {
  BackgroundTaskObject,
  BackgroundTaskSpec,
  BackgroundTaskStatus,
} from "../../crds/backgroundtask.ts";
import { compareText } from "../runtime/order.ts";
import { isoSeconds as iso } from "../runtime/time.ts";
import {
  type Circuit,
  circuitAfterRuns,
  halfOpen,
  isOpen,
  trialDeadline,
  trialDueAt,
} from "./circuit.ts";
import { type DeferralPolicy, decideDeferral, deferralStatus, type QueueLoad } from "./deferral.ts";
import {
  type CronJob,
  type CronJobSettings,
  cronJobDrift,
  desiredCronJob,
} from "./desired-cronjob.ts";
import {
  cronJobName,
  RECORDED_ANNOTATION,
  RESET_CIRCUIT_ANNOTATION,
  RUN_NOW_ANNOTATION,
  TASK_UID_ANNOTATION,
} from "./labels.ts";
import { isQueued, queuedSince } from "./queueing.ts";
import { type Rejection, rejectedValidation } from "./rejection.ts";
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
import type { Validation } from "./validate.ts";

export interface Observation {
  task: BackgroundTaskObject;
  validation: Validation;
  /** The apiserver's refusal of this generation's desired CronJob, if it refused it. */
  rejection?: Rejection;
  /** Run Jobs found for the task's namespace/name (of any incarnation of it). */
  jobs: RunJob[];
  podsOf: (job: RunJob) => RunPod[];
  cronJob: (LiveCronJob & CronJobTemplateSource) | undefined;
  settings: CronJobSettings;
  /** Deferral of low-priority runs while their Kueue queue is saturated; off when absent. */
  deferral?: { policy: DeferralPolicy; load: QueueLoad | undefined };
  now: Date;
}

export type EventType = "Normal" | "Warning";

export type Action =
  | { kind: "addFinalizer"; job: RunJob }
  | { kind: "applyCronJob"; cronJob: CronJob; why: string }
  | { kind: "createJob"; name: string; runKind: RunKind; body: Record<string, unknown> }
  /** `patch` turns the cached status into `status`; the apiserver holds `status` once it succeeds. */
  | { kind: "writeStatus"; patch: Record<string, unknown>; status: BackgroundTaskStatus }
  | { kind: "releaseJob"; job: RunJob; recorded: boolean }
  | { kind: "deleteJob"; job: RunJob; why: string }
  | { kind: "event"; type: EventType; reason: string; message: string; action?: string };

export interface Plan {
  status: BackgroundTaskStatus;
  actions: Action[];
  /** When to look again even if nothing changes (retry, trial, next schedule, awaited pods). */
  requeueAfterMs?: number;
  /** Finished runs recorded by this plan, for metrics. */
  recorded: FinishedRun[];
  /** Whether the task's runs are deferred (queue saturated); undefined when deferral is off. */
  deferred?: boolean;
}

const MAX_REQUEUE_MS = 6 * 3_600_000;

/** Whether a run Job belongs to this incarnation of the task (Jobs from before the UID annotation count as ours). */
export function belongsToTask(job: RunJob, taskUid: string): boolean {
  const uid = job.metadata.annotations?.[TASK_UID_ANNOTATION];
  return uid === undefined || uid === taskUid;
}

/** Everything the controller does for a task that no longer exists: let its runs go. */
export function planForDeletedTask(jobs: RunJob[]): Action[] {
  return jobs
    .filter(hasFinalizer)
    .map((job): Action => ({ kind: "releaseJob", job, recorded: false }));
}

export function plan(o: Observation): Plan {
  const { task, now } = o;
  const actions: Action[] = [];
  const events: Action[] = [];
  const event = (type: EventType, reason: string, message: string, action?: string) =>
    events.push({ kind: "event", type, reason, message, ...(action ? { action } : {}) });
  const annotations = task.metadata.annotations ?? {};
  let requeueMs = Number.POSITIVE_INFINITY;
  const requeueIn = (ms: number) => {
    requeueMs = Math.min(requeueMs, ms);
  };

  // Validation: the operator's own checks, then the apiserver's verdict on the CronJob.
  const validation = o.rejection ? rejectedValidation(o.validation, o.rejection) : o.validation;
  const previousValid = task.status?.conditions?.find((c) => c.type === "SpecValid");
  if (
    !validation.valid &&
    (previousValid?.status !== "False" || previousValid.message !== validation.message)
  )
    event("Warning", validation.reason, validation.message);
  const valid = validation.valid ? validation : undefined;
  const spec: BackgroundTaskSpec | undefined = valid?.spec;

  // 1. Runs: hold new ones, find the finished ones not yet recorded.
  const mine: RunJob[] = [];
  for (const job of o.jobs) {
    if (belongsToTask(job, task.metadata.uid)) mine.push(job);
    // A Job of an earlier task with the same name: nobody will record it.
    else if (hasFinalizer(job)) actions.push({ kind: "releaseJob", job, recorded: false });
  }
  const activeJobs: RunJob[] = [];
  /** Finished, but waiting for their pods' exit codes: still shown as active until recorded. */
  const finishing: RunJob[] = [];
  const finished: FinishedRun[] = [];
  const recordedBefore = new Set(task.status?.recordedJobs ?? []);
  for (const job of mine) {
    if (isRecorded(job, recordedBefore)) continue;
    if (!hasFinalizer(job) && !job.metadata.deletionTimestamp)
      actions.push({ kind: "addFinalizer", job });
    const run = finishedRun(job, o.podsOf(job));
    if (!run) activeJobs.push(job);
    else if (awaitingPods(run, now)) {
      finishing.push(job);
      requeueIn(500);
    } else finished.push(run);
  }
  const accounting = recordRuns(task.status ?? {}, finished, mine);
  if (accounting.deferred > 0) requeueIn(1000);
  const state: BackgroundTaskStatus = accounting.status;
  const lastOutcome = accounting.recorded.at(-1)?.outcome;
  if (lastOutcome === "Succeeded") delete state.retry;

  // Circuit breaker: a user reset wins, then the trial decides.
  const circuitBefore = state.circuit;
  let circuit: Circuit | undefined = state.circuit;
  const resetValue = annotations[RESET_CIRCUIT_ANNOTATION];
  let reset = false;
  if (resetValue && resetValue !== circuit?.lastResetValue) {
    reset = isOpen(circuit);
    circuit = { state: "Closed", lastResetValue: resetValue };
    state.consecutiveFailures = 0;
  }
  if (spec) {
    const decision = circuitAfterRuns(
      spec,
      circuit,
      state.consecutiveFailures ?? 0,
      accounting.recorded.map((r) => ({ jobName: r.job.metadata.name, outcome: r.outcome })),
      now,
    );
    circuit = decision.circuit;
    if (decision.trialTimedOut) {
      const stuck = activeJobs.find((j) => j.metadata.name === decision.trialTimedOut);
      if (stuck && !stuck.metadata.deletionTimestamp)
        actions.push({ kind: "deleteJob", job: stuck, why: "trial run outlived its timeout" });
      event(
        "Warning",
        "TrialTimedOut",
        `Trial run ${decision.trialTimedOut} did not finish in time; circuit stays open`,
      );
    }
  }
  if (circuit) state.circuit = circuit;
  else delete state.circuit;

  // Low-priority runs wait (the schedule is held) while their queue is saturated.
  const deferral =
    spec && o.deferral
      ? decideDeferral({
          priority: spec.priority,
          queueName: spec.queueName,
          load: o.deferral.load,
          deferredSince: state.deferral?.since,
          now,
          policy: o.deferral.policy,
        })
      : undefined;
  if (deferral) {
    state.deferral = deferralStatus(deferral);
    if (deferral.deferred) requeueIn(deferral.reviewInMs + 1000);
  } else delete state.deferral;

  // 2. The CronJob, suspended while the circuit is open.
  const live = o.cronJob;
  let shown: LiveCronJob | undefined = live;
  let desired: CronJob | undefined;
  if (valid) {
    desired = desiredCronJob(
      task,
      valid,
      o.settings,
      isOpen(state.circuit) || deferral?.deferred === true,
    );
    const drift = cronJobDrift(desired, live as never);
    if (drift !== undefined) {
      actions.push({ kind: "applyCronJob", cronJob: desired, why: drift });
      shown = desired as unknown as LiveCronJob;
      // Creation and spec changes show in status; someone else's edit or deletion deserves an event.
      if (drift.startsWith("drift") || (drift === "missing" && task.status?.cronJobName))
        event("Normal", "CronJobRepaired", `CronJob ${desired.metadata.name} restored (${drift})`);
    }
  }

  // 3. Runs the operator starts: from the desired template, owned by the live CronJob.
  const started: Array<{ name: string; kind: RunKind }> = [];
  const existing = new Set(o.jobs.map((j) => j.metadata.name));
  const source: CronJobTemplateSource | undefined =
    live?.metadata.uid && desired
      ? {
          metadata: {
            name: live.metadata.name,
            namespace: task.metadata.namespace,
            uid: live.metadata.uid,
          },
          spec: desired.spec,
        }
      : undefined;
  const startRun = (kind: RunKind, name: string): boolean => {
    if (!source) return false;
    if (!existing.has(name))
      actions.push({ kind: "createJob", name, runKind: kind, body: runJob(source, name, kind) });
    state.lastScheduleTime = iso(now);
    started.push({ name, kind });
    existing.add(name);
    return true;
  };
  const cronName = cronJobName(task.metadata.name);

  if (valid && spec) {
    const next =
      spec.suspend || isOpen(state.circuit)
        ? undefined
        : nextScheduleTime(valid.schedule, valid.timeZone, now);
    // Run now: one run per distinct annotation value; while open, it is the trial. Suspend wins.
    const runNow = annotations[RUN_NOW_ANNOTATION];
    if (runNow && runNow !== state.lastRunNowValue) {
      if (spec.suspend) {
        state.lastRunNowValue = runNow;
        event("Warning", "RunNowIgnored", "spec.suspend is true: run-now starts nothing");
      } else {
        const name = runJobName(cronName, "manual", `${task.metadata.uid}/${runNow}`);
        if (startRun("manual", name)) {
          state.lastRunNowValue = runNow;
          if (state.circuit?.state === "Open") state.circuit = halfOpen(state.circuit, name, now);
        } else requeueIn(500);
      }
    }
    // Half-open: one trial run after the cooldown (never while the user suspends the task).
    const circuitNow = state.circuit;
    if (circuitNow?.state === "Open" && !spec.suspend) {
      const due = trialDueAt(circuitNow);
      if (due && now >= due) {
        const name = runJobName(cronName, "trial", `${task.metadata.uid}/${circuitNow.openedAt}`);
        if (startRun("trial", name)) state.circuit = halfOpen(circuitNow, name, now);
        else requeueIn(500);
      } else if (due) requeueIn(due.getTime() - now.getTime() + 100);
    }
    if (state.circuit?.state === "HalfOpen") {
      const deadline = trialDeadline(spec, state.circuit);
      if (deadline) requeueIn(deadline.getTime() - now.getTime() + 100);
    }
    // Delayed retry after a failure recorded now; then start it when due.
    const lastFailure = accounting.failures.at(-1);
    if (lastFailure && lastOutcome === "Failed") {
      const planned = planRetry(
        spec,
        {
          uid: lastFailure.job.metadata.uid,
          kind: runKind(lastFailure.job),
          finishedAt: new Date(lastFailure.finishedAt),
        },
        state.retry,
        next,
        (seed) => runJobName(cronName, "retry", `${task.metadata.uid}/${seed}`),
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
        const name =
          retry.jobName ??
          runJobName(
            cronName,
            "retry",
            `${task.metadata.uid}/${retry.nextRetryTime}/${retry.attempt}`,
          );
        if (startRun("retry", name)) state.retry = { attempt: retry.attempt + 1, jobName: name };
        else requeueIn(500);
      } else {
        requeueIn(Math.max(500, retryAt - now.getTime()));
      }
    }
  }

  // 4. Status: counters and recorded UIDs in one write.
  // A run shows once the Job controller has taken it up (started or queued it), or once this
  // operator started it: a Job seen before its first sync would cost a status write now and
  // another when its start time comes.
  const shownBefore = new Set((task.status?.active ?? []).map((run) => run.name));
  const startedNames = new Set(started.map((s) => s.name));
  const shownJobs = [
    ...activeJobs.filter(
      (j) =>
        j.status?.startTime ||
        isQueued(j) ||
        shownBefore.has(j.metadata.name) ||
        startedNames.has(j.metadata.name),
    ),
    // Dropping a run while its pods catch up would cost a write just before the recording one.
    ...finishing.filter((j) => shownBefore.has(j.metadata.name)),
  ];
  const activeRuns = [
    ...shownJobs.map((j) => ({
      name: j.metadata.name,
      ...(j.status?.startTime ? { startTime: j.status.startTime } : {}),
      ...(isQueued(j) ? { queuedSince: queuedSince(j) } : {}),
    })),
    ...started
      .filter((s) => !shownJobs.some((j) => j.metadata.name === s.name))
      .map((s) => ({ name: s.name })),
  ].sort((a, b) => compareText(a.name, b.name));
  const status = computeStatus({
    task,
    validation,
    cronJob: shown,
    cronJobUpToDate: shown !== undefined,
    now,
    runState: state,
    activeRuns,
  });
  const patch = statusPatch(task.status, status);
  if (patch && !onlyForgetsRecordedJobs(task.status, status))
    actions.push({ kind: "writeStatus", patch, status });

  // 5. After the write: release what is recorded, prune history, tell the user.
  const recordedUids = new Set(status.recordedJobs ?? []);
  for (const job of mine) {
    const marked = job.metadata.annotations?.[RECORDED_ANNOTATION] === "true";
    if ((marked || recordedUids.has(job.metadata.uid)) && (!marked || hasFinalizer(job)))
      actions.push({ kind: "releaseJob", job, recorded: true });
  }
  if (spec) actions.push(...pruneHistory(spec, mine, recordedUids));
  for (const run of accounting.failures) {
    const code = run.exitCode !== undefined ? ` with exit code ${run.exitCode}` : "";
    event(
      "Warning",
      "RunFailed",
      `Run ${run.job.metadata.name} failed${code}${run.reason ? ` (${run.reason})` : ""}${run.message ? `: ${run.message.slice(0, 200)}` : ""}`,
      "Run",
    );
  }
  if (accounting.recovered)
    event(
      "Normal",
      "Recovered",
      `Run ${accounting.recorded.at(-1)?.job.metadata.name} succeeded after failures`,
      "Run",
    );
  for (const s of started) event("Normal", "RunStarted", `Started ${s.kind} run ${s.name}`, "Run");
  const circuitAfter = status.circuit;
  if (
    circuitAfter?.state === "Open" &&
    (circuitBefore?.state !== "Open" || circuitBefore.openedAt !== circuitAfter.openedAt)
  )
    event(
      "Warning",
      "CircuitOpened",
      `${status.consecutiveFailures ?? 0} consecutive failed runs: schedule suspended; trial run in ${circuitAfter.cooldownSeconds}s`,
    );
  if (isOpen(circuitBefore) && !isOpen(circuitAfter))
    event(
      "Normal",
      reset ? "CircuitReset" : "CircuitClosed",
      reset
        ? "Circuit closed by the reset-circuit annotation"
        : "Trial run succeeded: schedule resumed",
    );

  if (status.nextScheduleTime)
    requeueIn(Date.parse(status.nextScheduleTime) - now.getTime() + 1000);
  return {
    status,
    actions: [...actions, ...events],
    recorded: accounting.recorded,
    ...(deferral ? { deferred: deferral.deferred } : {}),
    ...(Number.isFinite(requeueMs)
      ? { requeueAfterMs: Math.min(MAX_REQUEUE_MS, Math.max(100, requeueMs)) }
      : {}),
  };
}

/** Keeps the newest recorded runs per outcome up to the task's history limits; deletes the rest. */
function pruneHistory(spec: BackgroundTaskSpec, jobs: RunJob[], recorded: Set<string>): Action[] {
  const done = jobs
    .filter(
      (j) =>
        !j.metadata.deletionTimestamp &&
        (j.metadata.annotations?.[RECORDED_ANNOTATION] === "true" || recorded.has(j.metadata.uid)),
    )
    .map((j) => finishedRun(j, []))
    .filter((r): r is FinishedRun => r !== undefined)
    .sort((a, b) => compareText(b.finishedAt, a.finishedAt));
  return [
    ...done.filter((r) => r.outcome === "Succeeded").slice(spec.successfulRunsHistoryLimit),
    ...done.filter((r) => r.outcome === "Failed").slice(spec.failedRunsHistoryLimit),
  ].map((run): Action => ({ kind: "deleteJob", job: run.job, why: "history limit" }));
}

/**
 * Whether the status changed only by UIDs leaving status.recordedJobs. Forgetting a recorded run is
 * never urgent (its Job carries the recorded annotation by then, or is gone), so it rides along with
 * the next write that happens anyway instead of costing a write of its own after every run.
 */
export function onlyForgetsRecordedJobs(
  previous: BackgroundTaskStatus | undefined,
  next: BackgroundTaskStatus,
): boolean {
  const before = previous?.recordedJobs ?? [];
  const after = next.recordedJobs ?? [];
  if (after.length >= before.length || !after.every((uid) => before.includes(uid))) return false;
  const remembering: BackgroundTaskStatus = { ...next, recordedJobs: before };
  return statusPatch(previous, remembering) === undefined;
}
