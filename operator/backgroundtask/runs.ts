// Run accounting, decided purely: which finished run Jobs are not yet in the
// task's status, and the status they lead to. Each run Job is counted once:
// it is "recorded" when its UID is in status.recordedJobs or it carries the
// recorded annotation; the UID goes into status in the same write as the
// counters, and the annotation (with the finalizer's removal) follows.
import type { BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { compareText } from "../runtime/order.ts";
import {
  RECORDED_ANNOTATION,
  RUN_FINALIZER,
  RUN_KIND_ANNOTATION,
  RUNNER_CONTAINER,
} from "./labels.ts";
import { queueWait } from "./queueing.ts";

export interface RunJob {
  metadata: {
    name: string;
    uid: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    annotations?: Record<string, string>;
    finalizers?: string[];
  };
  spec?: { activeDeadlineSeconds?: number };
  status?: {
    startTime?: string;
    completionTime?: string;
    active?: number;
    conditions?: Array<{
      type: string;
      status: string;
      reason?: string;
      message?: string;
      lastTransitionTime?: string;
    }>;
  };
}

export interface RunPod {
  metadata: { name: string; creationTimestamp?: string };
  status?: {
    containerStatuses?: Array<{
      name: string;
      state?: {
        terminated?: { exitCode: number; reason?: string; message?: string; finishedAt?: string };
      };
    }>;
  };
}

export interface FinishedRun {
  job: RunJob;
  outcome: "Succeeded" | "Failed";
  finishedAt: string;
  reason?: string;
  message?: string;
  exitCode?: number;
}

const MAX_MESSAGE = 1024;
/** Bound of status.recordedJobs. */
export const MAX_RECORDED_UIDS = 300;
/** Runs recorded by one status write; a larger backlog is recorded over several rounds. */
export const MAX_RUNS_PER_WRITE = 100;

export function isRecorded(job: RunJob, recordedUids: ReadonlySet<string>): boolean {
  return (
    job.metadata.annotations?.[RECORDED_ANNOTATION] === "true" || recordedUids.has(job.metadata.uid)
  );
}

export function runKind(job: RunJob): string {
  return job.metadata.annotations?.[RUN_KIND_ANNOTATION] ?? "scheduled";
}

/**
 * Why a run Job failed. A Job stopped at its deadline can end BackoffLimitExceeded: the Job
 * controller checks the backoff limit before the deadline, and when its cache has not yet seen
 * the pods it deleted at the deadline it drops that verdict, then counts the stopped pod as a
 * failure in the next sync. A Job that failed at or after startTime + activeDeadlineSeconds ran
 * out of time.
 */
function failureReason(
  job: RunJob,
  failed: { reason?: string; lastTransitionTime?: string },
): string | undefined {
  const deadlineSeconds = job.spec?.activeDeadlineSeconds;
  const started = Date.parse(job.status?.startTime ?? "");
  const failedAt = Date.parse(failed.lastTransitionTime ?? "");
  if (
    failed.reason === "BackoffLimitExceeded" &&
    deadlineSeconds !== undefined &&
    failedAt >= started + deadlineSeconds * 1000
  )
    return "DeadlineExceeded";
  return failed.reason;
}

/** The outcome of a Job that will not run any more, or undefined while it may. */
export function finishedRun(job: RunJob, pods: RunPod[]): FinishedRun | undefined {
  const terminal = job.status?.conditions?.find(
    (c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True",
  );
  let outcome: FinishedRun["outcome"];
  let finishedAt: string;
  let reason: string | undefined;
  let message: string | undefined;
  if (terminal) {
    outcome = terminal.type === "Complete" ? "Succeeded" : "Failed";
    finishedAt =
      (terminal.type === "Complete" ? job.status?.completionTime : undefined) ??
      terminal.lastTransitionTime ??
      job.metadata.creationTimestamp ??
      "";
    reason = terminal.type === "Failed" ? failureReason(job, terminal) : undefined;
    message = terminal.type === "Failed" ? terminal.message : undefined;
  } else if (job.metadata.deletionTimestamp) {
    // Deleted before it finished (concurrencyPolicy Replace, or by hand): it did not succeed.
    outcome = "Failed";
    finishedAt = job.metadata.deletionTimestamp;
    reason = "Deleted";
    message = "the run was deleted before it finished";
  } else {
    return undefined;
  }
  const terminated = lastTerminated(pods);
  if (terminated) {
    if (terminated.exitCode !== undefined) {
      // Prefer the runner's own result (termination message) over the Job controller's summary.
      if (terminated.message) message = terminated.message;
    }
  }
  return {
    job,
    outcome,
    finishedAt,
    reason,
    message: message?.slice(0, MAX_MESSAGE),
    exitCode: terminated?.exitCode,
  };
}

function lastTerminated(
  pods: RunPod[],
): { exitCode?: number; message?: string; finishedAt?: string } | undefined {
  let best: { exitCode?: number; message?: string; finishedAt?: string } | undefined;
  for (const pod of pods) {
    const container =
      pod.status?.containerStatuses?.find((c) => c.name === RUNNER_CONTAINER) ??
      pod.status?.containerStatuses?.[0];
    const terminated = container?.state?.terminated;
    if (!terminated) continue;
    if (!best || (terminated.finishedAt ?? "") >= (best.finishedAt ?? "")) {
      best = {
        exitCode: terminated.exitCode,
        message: terminated.message?.trim() || undefined,
        finishedAt: terminated.finishedAt,
      };
    }
  }
  return best;
}

/** True while a finished Job's pods may still be on their way to the cache, so its exit code would be missing. */
export function awaitingPods(run: FinishedRun, now: Date, graceMs = 3000): boolean {
  if (run.exitCode !== undefined || run.reason === "Deleted") return false;
  // At its deadline the Job fails at once, but the runner gets SIGTERM and its grace period
  // (30 s by default) to report partial work: wait for that exit code and result.
  const grace = run.reason === "DeadlineExceeded" ? DEADLINE_GRACE_MS : graceMs;
  return now.getTime() - Date.parse(run.finishedAt) < grace;
}

/** How long a run failed by its deadline waits for its pod's exit code before it is recorded without. */
export const DEADLINE_GRACE_MS = 40_000;

export interface Accounting {
  status: BackgroundTaskStatus;
  /** Runs recorded by this round, oldest first. */
  recorded: FinishedRun[];
  /** Finished runs left for a later round because of the per-write bound. */
  deferred: number;
  /** Failed runs newly recorded, in order, and whether a success ended a failure streak. */
  failures: FinishedRun[];
  recovered: boolean;
}

function byFinish(a: FinishedRun, b: FinishedRun): number {
  return (
    compareText(a.finishedAt, b.finishedAt) || compareText(a.job.metadata.name, b.job.metadata.name)
  );
}

/**
 * Folds newly finished runs, oldest first, into the status counters.
 *
 * Exactly once rests on status.recordedJobs: a Job is counted only if its UID
 * is not there and it does not carry the recorded annotation, and its UID goes
 * there in the same write as its counts. A UID may leave the list only when
 * that can no longer matter: once the Job is seen with the recorded annotation,
 * or once it is absent from the cache and the list needs the room (absent
 * UIDs are kept while there is room because a cache that lags the task's
 * status may not have seen the Job yet). UIDs of Jobs still present and
 * unannotated are never dropped; instead no more than the remaining room is
 * recorded per round, so a backlog of any size is recorded in bounded steps.
 */
export function recordRuns(
  previous: BackgroundTaskStatus,
  finished: FinishedRun[],
  liveJobs: RunJob[],
): Accounting {
  const status: BackgroundTaskStatus = { ...previous };
  const live = new Map(liveJobs.map((j) => [j.metadata.uid, j]));
  const previousUids = previous.recordedJobs ?? [];
  const mustKeep = previousUids.filter((uid) => {
    const job = live.get(uid);
    return job !== undefined && job.metadata.annotations?.[RECORDED_ANNOTATION] !== "true";
  });
  const absent = previousUids.filter((uid) => !live.has(uid));
  const room = Math.max(0, Math.min(MAX_RUNS_PER_WRITE, MAX_RECORDED_UIDS - mustKeep.length));
  const all = [...finished].sort(byFinish);
  const ordered = all.slice(0, room);
  const counters = { total: 0, succeeded: 0, failed: 0, ...(previous.runs ?? {}) };
  let consecutive = previous.consecutiveFailures ?? 0;
  const failures: FinishedRun[] = [];
  let recovered = false;
  for (const run of ordered) {
    counters.total++;
    const start = run.job.status?.startTime ?? run.job.metadata.creationTimestamp;
    const lastRun: NonNullable<BackgroundTaskStatus["lastRun"]> = {
      jobName: run.job.metadata.name,
      outcome: run.outcome,
      ...(start ? { startTime: start } : {}),
      completionTime: run.finishedAt,
      ...(start
        ? {
            durationSeconds: Math.max(
              0,
              Math.round((Date.parse(run.finishedAt) - Date.parse(start)) / 100) / 10,
            ),
          }
        : {}),
      ...(run.exitCode !== undefined ? { exitCode: run.exitCode } : {}),
      ...queueWait(run.job),
      ...(run.reason ? { reason: run.reason } : {}),
      ...(run.message ? { message: run.message } : {}),
    };
    if (!status.lastRun?.completionTime || run.finishedAt >= status.lastRun.completionTime)
      status.lastRun = lastRun;
    if (run.outcome === "Succeeded") {
      counters.succeeded++;
      if (consecutive > 0) recovered = true;
      consecutive = 0;
      if (!status.lastSuccessTime || run.finishedAt > status.lastSuccessTime)
        status.lastSuccessTime = run.finishedAt;
    } else {
      counters.failed++;
      consecutive++;
      failures.push(run);
      if (!status.lastFailureTime || run.finishedAt > status.lastFailureTime)
        status.lastFailureTime = run.finishedAt;
    }
  }
  status.runs = counters;
  status.consecutiveFailures = consecutive;
  const kept = new Set([...mustKeep]);
  const fresh = ordered.map((r) => r.job.metadata.uid);
  const spare = Math.max(0, MAX_RECORDED_UIDS - mustKeep.length - fresh.length);
  for (const uid of absent.slice(Math.max(0, absent.length - spare))) kept.add(uid);
  const uids = [...previousUids.filter((uid) => kept.has(uid)), ...fresh];
  if (uids.length) status.recordedJobs = uids;
  else delete status.recordedJobs;
  return { status, recorded: ordered, deferred: all.length - ordered.length, failures, recovered };
}

export function hasFinalizer(job: RunJob): boolean {
  return job.metadata.finalizers?.includes(RUN_FINALIZER) ?? false;
}
