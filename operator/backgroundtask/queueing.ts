// Priorities and queues: what spec.priority and spec.queueName become on a
// run, and what a run waiting in a Kueue queue looks like. Pure functions.
//
// Semantics (README "Priorities and queues"):
// - spec.priority picks a pod PriorityClass and, for queued tasks, a Kueue
//   WorkloadPriorityClass, both by name from the operator's settings. "normal"
//   may map to nothing (the cluster's default priority); any other level that
//   maps to nothing makes the task SpecValid=False, naming spec.priority.
// - A task with spec.queueName creates its run Jobs suspended; Kueue admits
//   (unsuspends) them. A run waiting for admission is Queued: not running, not
//   failed, not counted until it finishes.
// - spec.timeout counts from admission: Kubernetes resets a Job's startTime,
//   and with it activeDeadlineSeconds, when the Job is resumed.
import type { BackgroundTaskSpec } from "../../crds/backgroundtask.ts";
import type { OperatorConfig } from "../config.ts";
import type { RunJob } from "./runs.ts";
import type { InvalidTask, Validation } from "./validate.ts";

export const WORKLOAD_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class";

export type PrioritySettings = Pick<OperatorConfig, "priorityClasses" | "workloadPriorityClasses">;

export interface ResolvedPriority {
  /** Pod spec.priorityClassName, if any. */
  priorityClassName?: string;
  /** Kueue WorkloadPriorityClass label value, for tasks with a queue. */
  workloadPriorityClass?: string;
}

/** The class names a task's priority maps to, or why it maps to nothing. */
export function resolvePriority(
  spec: Pick<BackgroundTaskSpec, "priority" | "queueName">,
  settings: PrioritySettings,
): ResolvedPriority | { unmapped: string } {
  const level = spec.priority;
  const podClass = settings.priorityClasses[level];
  const workloadClasses = settings.workloadPriorityClasses ?? settings.priorityClasses;
  const workloadClass = spec.queueName ? workloadClasses[level] : undefined;
  if (level !== "normal") {
    if (!podClass)
      return {
        unmapped: `${JSON.stringify(level)} maps to no PriorityClass (operator setting --priority-classes maps ${mappedLevels(settings.priorityClasses)})`,
      };
    if (spec.queueName && !workloadClass)
      return {
        unmapped: `${JSON.stringify(level)} maps to no Kueue WorkloadPriorityClass (operator setting --workload-priority-classes maps ${mappedLevels(workloadClasses)})`,
      };
  }
  return {
    ...(podClass ? { priorityClassName: podClass } : {}),
    ...(workloadClass ? { workloadPriorityClass: workloadClass } : {}),
  };
}

function mappedLevels(map: Partial<Record<string, string>>): string {
  const levels = Object.keys(map).filter((k) => map[k]);
  return levels.length ? levels.join(", ") : "no level";
}

/** A valid task whose priority maps to nothing becomes invalid, naming spec.priority. */
export function withPriorityCheck(validation: Validation, settings: PrioritySettings): Validation {
  if (!validation.valid) return validation;
  const resolved = resolvePriority(validation.spec, settings);
  if (!("unmapped" in resolved)) return validation;
  const invalid: InvalidTask = {
    valid: false,
    reason: "UnmappedPriority",
    field: "spec.priority",
    message: `spec.priority: ${resolved.unmapped}`,
    references: validation.references,
  };
  return invalid;
}

/** True while a run Job waits, suspended, for admission (Kueue unsuspends it when admitted). */
export function isQueued(job: RunJob): boolean {
  if (job.status?.startTime) return false;
  return (
    job.status?.conditions?.some((c) => c.type === "Suspended" && c.status === "True") ?? false
  );
}

/** Since when a queued run has waited: its last suspension (a preempted run waits again), else its creation. */
export function queuedSince(job: RunJob): string | undefined {
  const suspended = job.status?.conditions?.find(
    (c) => c.type === "Suspended" && c.status === "True",
  );
  return suspended?.lastTransitionTime ?? job.metadata.creationTimestamp;
}

/** Seconds a run waited between creation and its (last) admission; undefined if it never waited. */
export function queueWaitSeconds(job: RunJob): number | undefined {
  const created = job.metadata.creationTimestamp;
  const started = job.status?.startTime;
  if (!created || !started) return undefined;
  const wasSuspended = job.status?.conditions?.some((c) => c.type === "Suspended");
  if (!wasSuspended) return undefined;
  return Math.max(0, Math.round((Date.parse(started) - Date.parse(created)) / 1000));
}

/** The lastRun field for a run's queue wait: present only for runs that waited in a queue. */
export function queueWait(job: RunJob): { queuedSeconds?: number } {
  const seconds = queueWaitSeconds(job);
  return seconds === undefined ? {} : { queuedSeconds: seconds };
}
