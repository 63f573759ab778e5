// Run accounting, decided purely: which finished run Jobs are not yet in the
// task's status, and the status they lead to. Each run Job is counted once:
// it is "recorded" when its UID is in status.recordedJobs or it carries the
// recorded annotation; the UID goes into status in the same write as the
// counters, and the annotation (with the finalizer's removal) follows.
import type { BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
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
const MAX_RECORDED_UIDS = 200;

export function isRecorded(job: RunJob, status: BackgroundTaskStatus | undefined): boolean {
  return (
    job.metadata.annotations?.[RECORDED_ANNOTATION] === "true" ||
    (status?.recordedJobs ?? []).includes(job.metadata.uid)
  );
}

export function runKind(job: RunJob): string {
  return job.metadata.annotations?.[RUN_KIND_ANNOTATION] ?? "scheduled";
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
    reason = terminal.type === "Failed" ? terminal.reason : undefined;
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
  if (run.exitCode !== undefined || run.reason === "Deleted" || run.reason === "DeadlineExceeded")
    return false;
  return now.getTime() - Date.parse(run.finishedAt) < graceMs;
}

export interface Accounting {
  status: BackgroundTaskStatus;
  recorded: FinishedRun[];
  /** Failed runs newly recorded, in order, and whether a success ended a failure streak. */
  failures: FinishedRun[];
  recovered: boolean;
}

/** Folds newly finished runs, oldest first, into the status counters. */
export function recordRuns(
  previous: BackgroundTaskStatus,
  runs: FinishedRun[],
  liveJobs: RunJob[],
): Accounting {
  const status: BackgroundTaskStatus = { ...previous };
  const ordered = [...runs].sort(
    (a, b) =>
      a.finishedAt.localeCompare(b.finishedAt) ||
      a.job.metadata.name.localeCompare(b.job.metadata.name),
  );
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
  // Keep only UIDs whose Jobs may still lack the recorded annotation; the rest are proven by the annotation.
  const needed = new Set(
    liveJobs
      .filter((j) => j.metadata.annotations?.[RECORDED_ANNOTATION] !== "true")
      .map((j) => j.metadata.uid),
  );
  const uids = [
    ...(previous.recordedJobs ?? []).filter((uid) => needed.has(uid)),
    ...ordered.map((r) => r.job.metadata.uid),
  ];
  status.recordedJobs = uids.slice(-MAX_RECORDED_UIDS);
  if (status.recordedJobs.length === 0) delete status.recordedJobs;
  return { status, recorded: ordered, failures, recovered };
}

export function hasFinalizer(job: RunJob): boolean {
  return job.metadata.finalizers?.includes(RUN_FINALIZER) ?? false;
}
