// Names, labels and annotations the operator puts on what it creates, and the
// way back from a child object to its BackgroundTask.
import { createHash } from "node:crypto";

export const MANAGED_BY = "nightshift-operator";
export const FIELD_MANAGER = "nightshift-operator";
export const TASK_LABEL = "nightshift.dev/task";
export const TASK_TYPE_LABEL = "nightshift.dev/task-type";
export const TASK_NAME_ANNOTATION = "nightshift.dev/task-name";
/** On run Jobs: the UID of the BackgroundTask they run for. */
export const TASK_UID_ANNOTATION = "nightshift.dev/task-uid";
export const TEMPLATE_HASH_ANNOTATION = "nightshift.dev/template-hash";
export const QUEUE_LABEL = "kueue.x-k8s.io/queue-name";
export const RUNNER_CONTAINER = "task";
export const MANAGED_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;

/**
 * CronJob name for a task: the task's own name when it fits the 52 characters
 * a CronJob allows (its Jobs append 11), else a prefix plus a stable hash.
 */
export function cronJobName(taskName: string): string {
  if (taskName.length <= 52) return taskName;
  const hash = createHash("sha256").update(taskName).digest("hex").slice(0, 8);
  return `${taskName.slice(0, 43).replace(/[-.]+$/, "")}-${hash}`;
}

export function taskLabels(taskName: string, taskType: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": "nightshift-task",
    "app.kubernetes.io/instance": cronJobName(taskName),
    "app.kubernetes.io/component": "background-task",
    "app.kubernetes.io/part-of": "nightshift",
    "app.kubernetes.io/managed-by": MANAGED_BY,
    [TASK_LABEL]: cronJobName(taskName),
    [TASK_TYPE_LABEL]: taskType,
  };
}

interface ChildObject {
  metadata: {
    namespace?: string;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{ kind: string; name: string; apiVersion: string }>;
  };
}

/** namespace/name of the BackgroundTask a CronJob or Job belongs to, if any. */
export function ownerTaskKey(object: ChildObject): string | undefined {
  const namespace = object.metadata.namespace;
  if (!namespace) return undefined;
  const owner = object.metadata.ownerReferences?.find(
    (o) => o.kind === "BackgroundTask" && o.apiVersion.startsWith("nightshift.dev/"),
  );
  if (owner) return `${namespace}/${owner.name}`;
  const name = object.metadata.annotations?.[TASK_NAME_ANNOTATION];
  return name ? `${namespace}/${name}` : undefined;
}

/** Held on every run Job until its outcome is in the task's status, so no run is lost. */
export const RUN_FINALIZER = "nightshift.dev/run-accounting";
/** Set on a run Job (with the finalizer removed, in one patch) once its outcome is recorded. */
export const RECORDED_ANNOTATION = "nightshift.dev/recorded";
/** Why a run exists: absent for scheduled runs; "manual", "retry" or "trial" for runs the operator starts. */
export const RUN_KIND_ANNOTATION = "nightshift.dev/run-kind";
/** `kubectl annotate bgt x nightshift.dev/run-now=$(date +%s)` starts one run per distinct value. */
export const RUN_NOW_ANNOTATION = "nightshift.dev/run-now";
/** `kubectl annotate bgt x nightshift.dev/reset-circuit=$(date +%s)` closes an open circuit at once. */
export const RESET_CIRCUIT_ANNOTATION = "nightshift.dev/reset-circuit";
