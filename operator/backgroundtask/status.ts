// The status a BackgroundTask should show, as a pure function of the task,
// its validation, its live CronJob and the time; and the merge patch that
// turns the current status into it (none when nothing changed).
import { isDeepStrictEqual } from "node:util";
import type {
  BackgroundTaskObject,
  BackgroundTaskStatus,
  Condition,
} from "../../crds/backgroundtask.ts";
import { isoSeconds } from "../runtime/time.ts";
import { type ConditionInput, setCondition } from "./conditions.ts";
import { deferredCondition } from "./deferral.ts";
import { nextScheduleTime } from "./schedule.ts";
import type { Validation } from "./validate.ts";

export interface LiveCronJob {
  metadata: { name: string };
  spec?: { schedule?: string; timeZone?: string; suspend?: boolean };
  status?: { lastScheduleTime?: string; active?: Array<{ name?: string }> };
}

export interface StatusInput {
  task: BackgroundTaskObject;
  /** The status after recording runs and deciding circuit, retry and run-now: counters and run fields come from here. */
  runState?: BackgroundTaskStatus;
  /** Run Jobs still running. */
  activeRuns?: Array<{ name: string; startTime?: string; queuedSince?: string }>;
  validation: Validation;
  cronJob: LiveCronJob | undefined;
  /** Whether the live CronJob carries the desired template. */
  cronJobUpToDate: boolean;
  now: Date;
}

export function computeStatus(input: StatusInput): BackgroundTaskStatus {
  const { task, validation, cronJob, now } = input;
  const previous = task.status ?? {};
  const runState = input.runState ?? previous;
  const nowText = isoSeconds(now);
  const generation = task.metadata.generation;
  const suspended = task.spec.suspend === true;

  const wanted: ConditionInput[] = [];
  if (validation.valid) {
    wanted.push({
      type: "SpecValid",
      status: "True",
      reason: "Valid",
      message: "spec is valid",
      observedGeneration: generation,
    });
  } else {
    wanted.push({
      type: "SpecValid",
      status: "False",
      reason: validation.reason,
      message: validation.message,
      observedGeneration: generation,
    });
  }
  wanted.push(
    suspended
      ? {
          type: "Suspended",
          status: "True",
          reason: "SuspendedBySpec",
          message: "spec.suspend is true; no new runs are scheduled",
          observedGeneration: generation,
        }
      : {
          type: "Suspended",
          status: "False",
          reason: "Scheduled",
          message: "runs are scheduled",
          observedGeneration: generation,
        },
  );
  let ready: ConditionInput;
  if (!validation.valid) {
    ready = {
      type: "Ready",
      status: "False",
      reason: validation.reason,
      message: cronJob
        ? `${validation.message}; the CronJob keeps the last valid spec`
        : validation.message,
      observedGeneration: generation,
    };
  } else if (!cronJob || !input.cronJobUpToDate) {
    ready = {
      type: "Ready",
      status: "False",
      reason: "CronJobPending",
      message: "CronJob is being created or updated",
      observedGeneration: generation,
    };
  } else {
    const zone = cronJob.spec?.timeZone ?? "UTC";
    ready = {
      type: "Ready",
      status: "True",
      reason: suspended ? "Suspended" : "Scheduled",
      message: suspended
        ? `CronJob ${cronJob.metadata.name} is suspended`
        : `CronJob ${cronJob.metadata.name} runs at "${cronJob.spec?.schedule}" (${zone})`,
      observedGeneration: generation,
    };
  }
  wanted.push(ready);
  const circuit = runState.circuit;
  if (circuit?.state === "Open" || circuit?.state === "HalfOpen") {
    wanted.push({
      type: "CircuitOpen",
      status: "True",
      reason: circuit.state === "HalfOpen" ? "TrialRun" : "ConsecutiveFailures",
      message:
        circuit.state === "HalfOpen"
          ? `trial run ${circuit.trialJobName ?? ""} decides whether the schedule resumes`
          : `${runState.consecutiveFailures ?? 0} consecutive failed runs; schedule suspended, trial run after ${circuit.cooldownSeconds ?? 0}s cooldown`,
      observedGeneration: generation,
    });
  } else if (task.spec.circuitBreaker || circuit) {
    wanted.push({
      type: "CircuitOpen",
      status: "False",
      reason: "Closed",
      message: "runs are scheduled normally",
      observedGeneration: generation,
    });
  }
  const deferral = runState.deferral;
  if (deferral || task.spec.queueName) wanted.push(deferredCondition(deferral, generation));
  // kstatus (Flux, Helm 4, Argo CD) reads these abnormal-true conditions; present only while true.
  if (!validation.valid) {
    wanted.push({
      type: "Stalled",
      status: "True",
      reason: validation.reason,
      message: validation.message,
      observedGeneration: generation,
    });
  } else if (ready.status !== "True") {
    wanted.push({
      type: "Reconciling",
      status: "True",
      reason: ready.reason,
      message: ready.message,
      observedGeneration: generation,
    });
  }
  const conditions: Condition[] = wanted.map((c) => setCondition(previous.conditions, c, nowText));

  const status: BackgroundTaskStatus = { ...runState };
  status.active = input.activeRuns?.length ? input.activeRuns : undefined;
  status.observedGeneration = generation;
  status.conditions = conditions;
  status.task = validation.valid
    ? validation.taskType
    : (task.spec.task ?? (task.spec.container ? "container" : undefined));
  if (cronJob) {
    status.cronJobName = cronJob.metadata.name;
    status.schedule = cronJob.spec?.schedule;
    status.timeZone = cronJob.spec?.timeZone ?? "UTC";
    const lastSchedule = cronJob.status?.lastScheduleTime;
    if (lastSchedule && (!status.lastScheduleTime || lastSchedule > status.lastScheduleTime))
      status.lastScheduleTime = lastSchedule;
    const next =
      cronJob.spec?.suspend || !cronJob.spec?.schedule
        ? undefined
        : nextScheduleTime(cronJob.spec.schedule, cronJob.spec.timeZone, now);
    status.nextScheduleTime = next ? isoSeconds(next) : undefined;
  }
  status.phase = phaseOf(status, validation.valid, suspended, ready.status === "True");
  return dropUndefined(status);
}

function phaseOf(
  status: BackgroundTaskStatus,
  valid: boolean,
  suspended: boolean,
  ready: boolean,
): NonNullable<BackgroundTaskStatus["phase"]> {
  if (!valid) return "Invalid";
  if (status.circuit?.state === "Open" || status.circuit?.state === "HalfOpen")
    return "CircuitOpen";
  if (suspended) return "Suspended";
  if (!ready) return "Pending";
  if ((status.active?.length ?? 0) > 0)
    return status.active?.every((run) => run.queuedSince) ? "Queued" : "Running";
  if ((status.consecutiveFailures ?? 0) > 0) return "Failing";
  return "Ready";
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * RFC 7386 merge patch that turns `current` into exactly `desired`, or
 * undefined when they are equal. A merge patch merges objects recursively,
 * so every key that disappears at any depth must be sent as null; arrays
 * (and anything that is not a plain object) are replaced whole.
 */
export function mergePatchDiff(current: unknown, desired: unknown): unknown {
  if (!isPlainObject(current) || !isPlainObject(desired))
    return isDeepStrictEqual(current, desired) ? undefined : desired;
  const patch: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(current), ...Object.keys(desired)])) {
    if (!(key in desired) || desired[key] === undefined) {
      if (key in current && current[key] !== undefined) patch[key] = null;
      continue;
    }
    if (!(key in current) || current[key] === undefined) {
      patch[key] = desired[key];
      continue;
    }
    const child = mergePatchDiff(current[key], desired[key]);
    if (child !== undefined) patch[key] = child;
  }
  return Object.keys(patch).length ? patch : undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Merge patch from the current to the desired status; undefined when they are equal. */
export function statusPatch(
  current: BackgroundTaskStatus | undefined,
  desired: BackgroundTaskStatus,
): Record<string, unknown> | undefined {
  return mergePatchDiff(current ?? {}, desired) as Record<string, unknown> | undefined;
}

/**
 * The task as the apiserver holds it after our status patch succeeded, built from the patch's
 * metadata-only answer: the answer's metadata, and the status the patch was computed to make.
 * The patch carried the cached task's resourceVersion, so the apiserver held the cached status
 * when it applied it; the status schema has no defaults to add.
 */
export function taskAfterStatusWrite(
  task: BackgroundTaskObject,
  metadata: BackgroundTaskObject["metadata"],
  status: BackgroundTaskStatus,
): BackgroundTaskObject {
  return { apiVersion: task.apiVersion, kind: task.kind, metadata, spec: task.spec, status };
}

/**
 * Whether the operator has yet to write this task's status for its generation: a new or changed
 * task, soon replaced by our write. Not a task being deleted: deletion raises its generation, but
 * no status is written for it, and another controller's finalizer may hold it for long.
 */
export function awaitsStatusWrite(task: {
  metadata: { generation?: number; deletionTimestamp?: string };
  status?: { observedGeneration?: number };
}): boolean {
  return (
    !task.metadata.deletionTimestamp && task.status?.observedGeneration !== task.metadata.generation
  );
}
