// Deferring low-priority runs while their Kueue queue is saturated, decided
// purely. Kueue would accept every run and keep it as a suspended Job; a
// saturated queue then fills with low-priority Jobs that wait for hours.
// Nightshift knows the schedule, so it can hold such a task's schedule back
// instead (its CronJob is suspended while deferred) and let the run happen
// late, once, when the queue drains — the CronJob controller starts the most
// recent missed run on resume, within startingDeadlineSeconds.
//
// Bounded: a task is deferred for at most maxDeferralMs per saturation
// episode (then its runs go to the queue like any other until the queue
// drains; the shell keeps `since` for as long as it is returned), and
// hysteresis stops flapping: deferral starts at `saturatedAt` pending
// workloads and ends below half of it.
import type { BackgroundTaskStatus, priorities } from "../../crds/backgroundtask.ts";
import type { ConditionInput } from "./conditions.ts";

export type Priority = (typeof priorities)[number];

export interface DeferralPolicy {
  /** Pending workloads in the task's LocalQueue at which its queue counts as saturated; 0 turns deferral off. */
  saturatedAt: number;
  /** Levels that give way, e.g. ["low"]. */
  levels: Priority[];
  maxDeferralMs: number;
}

export interface QueueLoad {
  /** LocalQueue status.pendingWorkloads. */
  pending: number;
}

export type Deferral =
  | { deferred: false }
  /** Deferred as long as allowed in this saturation episode: runs go to the queue until it drains. */
  | { deferred: false; reason: "MaxDeferralReached"; since: string }
  | { deferred: true; since: string; message: string; reviewInMs: number };

export function decideDeferral(input: {
  priority: Priority;
  queueName?: string;
  /** Undefined when the queue is unknown (no Kueue, or not synced): never defer blindly. */
  load?: QueueLoad;
  /** When the current deferral began, from status. */
  deferredSince?: string;
  now: Date;
  policy: DeferralPolicy;
}): Deferral {
  const { priority, queueName, load, deferredSince, now, policy } = input;
  if (!queueName || !load || policy.saturatedAt <= 0 || !policy.levels.includes(priority))
    return { deferred: false };
  const threshold = deferredSince ? Math.ceil(policy.saturatedAt / 2) : policy.saturatedAt;
  if (load.pending < threshold) return { deferred: false };
  const since = deferredSince ?? now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const elapsed = now.getTime() - Date.parse(since);
  if (elapsed >= policy.maxDeferralMs)
    return { deferred: false, reason: "MaxDeferralReached", since };
  return {
    deferred: true,
    since,
    // Stable while the episode lasts, so the status is not rewritten as the queue moves.
    message: `queue ${queueName} is saturated (${policy.saturatedAt} or more pending workloads); ${priority}-priority runs wait up to ${Math.round(policy.maxDeferralMs / 60_000)}m, until it drains below ${Math.ceil(policy.saturatedAt / 2)}`,
    reviewInMs: policy.maxDeferralMs - elapsed,
  };
}

/** The status a deferral decision leaves: kept for the whole episode, dropped when it ends. */
export function deferralStatus(decision: Deferral): BackgroundTaskStatus["deferral"] {
  if (decision.deferred) return { since: decision.since, active: true, message: decision.message };
  if ("since" in decision) return { since: decision.since, active: false };
  return undefined;
}

/** Condition Deferred, shown for tasks with a queue. */
export function deferredCondition(
  deferral: BackgroundTaskStatus["deferral"],
  generation: number | undefined,
): ConditionInput {
  if (deferral?.active)
    return {
      type: "Deferred",
      status: "True",
      reason: "QueueSaturated",
      message: deferral.message ?? "queue saturated",
      observedGeneration: generation,
    };
  return {
    type: "Deferred",
    status: "False",
    reason: deferral ? "MaxDeferralReached" : "QueueAvailable",
    message: deferral
      ? "deferred as long as allowed: runs go to the queue until it drains"
      : "runs go to the queue when due",
    observedGeneration: generation,
  };
}
