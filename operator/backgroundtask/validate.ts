// Everything the CRD schema cannot check at admission, decided in one place:
// the spec's shape (in case admission was bypassed or the CRD is older),
// the catalogue task and its params, the schedule, the time zone, the image
// of a custom task, and the Secrets and ConfigMaps the task reads. Every
// problem names its field.
import {
  type BackgroundTaskObject,
  type BackgroundTaskSpec,
  backgroundTaskSpec,
} from "../../crds/backgroundtask.ts";
import {
  catalogue,
  fieldPath,
  isTaskType,
  type TaskType,
  validateParams,
} from "../../crds/catalogue/index.ts";
import { parseDuration } from "../../crds/duration.ts";
import {
  resolveSchedule,
  ScheduleError,
  validateResolvedSchedule,
  validateTimeZone,
} from "./schedule.ts";
import { runPodProblem } from "./validate-run-pod.ts";

export interface ValidTask {
  valid: true;
  spec: BackgroundTaskSpec;
  /** Catalogue task type, or "container" for a custom task. */
  taskType: TaskType | "container";
  schedule: string;
  timeZone?: string;
  /** Secrets and ConfigMaps referenced, as "Secret/name" / "ConfigMap/name". */
  references: string[];
}

export interface InvalidTask {
  valid: false;
  reason: string;
  field: string;
  message: string;
  references: string[];
}

export type Validation = ValidTask | InvalidTask;

/** What validation needs from outside the task: cluster facts and the admin's policy. */
export interface ValidationContext {
  /**
   * Whether a Secret or ConfigMap may exist in the namespace: false only once
   * a run pod reported it missing (the operator cannot read Secrets).
   */
  exists(kind: "Secret" | "ConfigMap", namespace: string, name: string): boolean;
  /** Whether a custom task may run this image (--allowed-image-prefixes). */
  imageAllowed(image: string): boolean;
}

function invalid(
  reason: string,
  field: string,
  message: string,
  references: string[] = [],
): InvalidTask {
  return { valid: false, reason, field, message: `${field}: ${message}`, references };
}

interface Reference {
  kind: "Secret" | "ConfigMap";
  name: string;
  field: string;
  optional: boolean;
}

function referencesOf(spec: BackgroundTaskSpec): Reference[] {
  const refs: Reference[] = [];
  spec.env?.forEach((env, i) => {
    const secret = env.valueFrom?.secretKeyRef;
    const configMap = env.valueFrom?.configMapKeyRef;
    if (secret)
      refs.push({
        kind: "Secret",
        name: secret.name,
        field: `spec.env[${i}].valueFrom.secretKeyRef.name`,
        optional: secret.optional ?? false,
      });
    if (configMap)
      refs.push({
        kind: "ConfigMap",
        name: configMap.name,
        field: `spec.env[${i}].valueFrom.configMapKeyRef.name`,
        optional: configMap.optional ?? false,
      });
  });
  spec.envFrom?.forEach((source, i) => {
    if (source.secretRef)
      refs.push({
        kind: "Secret",
        name: source.secretRef.name,
        field: `spec.envFrom[${i}].secretRef.name`,
        optional: false,
      });
    if (source.configMapRef)
      refs.push({
        kind: "ConfigMap",
        name: source.configMapRef.name,
        field: `spec.envFrom[${i}].configMapRef.name`,
        optional: false,
      });
  });
  spec.volumes?.forEach((volume, i) => {
    if (volume.secret)
      refs.push({
        kind: "Secret",
        name: volume.secret.secretName,
        field: `spec.volumes[${i}].secret.secretName`,
        optional: volume.secret.optional ?? false,
      });
    if (volume.configMap)
      refs.push({
        kind: "ConfigMap",
        name: volume.configMap.name,
        field: `spec.volumes[${i}].configMap.name`,
        optional: volume.configMap.optional ?? false,
      });
  });
  spec.imagePullSecrets?.forEach((secret, i) => {
    refs.push({
      kind: "Secret",
      name: secret.name,
      field: `spec.imagePullSecrets[${i}].name`,
      optional: false,
    });
  });
  return refs;
}

/**
 * What the task alone decides (and the operator's fixed image policy): the same for every
 * reconcile of one generation, so the reconciler may keep it; whether the referenced Secrets
 * and ConfigMaps exist changes with the cluster and is checked by `withReferences`.
 */
export interface SpecCheck {
  validation: Validation;
  refs: Reference[];
}

export function validateTask(task: BackgroundTaskObject, lookup: ValidationContext): Validation {
  return withReferences(checkSpec(task, lookup), task.metadata.namespace, lookup);
}

export function checkSpec(
  task: BackgroundTaskObject,
  lookup: Pick<ValidationContext, "imageAllowed">,
): SpecCheck {
  const parsed = backgroundTaskSpec.safeParse(task.spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = fieldPath("spec", issue?.path ?? []);
    return { validation: invalid("InvalidSpec", field, issue?.message ?? "invalid"), refs: [] };
  }
  const refs = referencesOf(parsed.data);
  const validation = specValidation(task.metadata, parsed.data, refs, lookup);
  return { validation, refs: validation.valid ? refs : [] };
}

export function withReferences(
  check: SpecCheck,
  namespace: string,
  lookup: Pick<ValidationContext, "exists">,
): Validation {
  const { validation } = check;
  if (!validation.valid) return validation;
  for (const ref of check.refs) {
    if (!ref.optional && !lookup.exists(ref.kind, namespace, ref.name)) {
      return invalid(
        `Missing${ref.kind}`,
        ref.field,
        `${ref.kind} ${JSON.stringify(ref.name)} does not exist in namespace ${namespace} (a run pod failed with CreateContainerConfigError)`,
        validation.references,
      );
    }
  }
  return validation;
}

function specValidation(
  metadata: BackgroundTaskObject["metadata"],
  spec: BackgroundTaskSpec,
  refs: Reference[],
  lookup: Pick<ValidationContext, "imageAllowed">,
): Validation {
  const references = refs.map((r) => `${r.kind}/${r.name}`);

  let taskType: TaskType | "container" = "container";
  let schedule = spec.schedule;
  if (spec.task !== undefined) {
    if (!isTaskType(spec.task)) {
      return invalid(
        "UnknownTask",
        "spec.task",
        `unknown task type ${JSON.stringify(spec.task)}; known types: ${Object.keys(catalogue).join(", ")}`,
        references,
      );
    }
    taskType = spec.task;
    const params = validateParams(spec.task, spec.params, "spec.params");
    if (!params.ok) {
      const first = params.problems[0] ?? "spec.params: invalid";
      const colon = first.indexOf(": ");
      return invalid(
        "InvalidParams",
        first.slice(0, colon),
        `${first.slice(colon + 2)}${params.problems.length > 1 ? ` (and ${params.problems.length - 1} more: ${params.problems.slice(1).join("; ")})` : ""}`,
        references,
      );
    }
    schedule ??= catalogue[spec.task].defaultSchedule;
  }
  const image = spec.container?.image;
  if (image !== undefined && !lookup.imageAllowed(image)) {
    return invalid(
      "ImageNotAllowed",
      "spec.container.image",
      `image ${JSON.stringify(image)} is not allowed for custom tasks; the operator's allowed image prefixes do not cover it (ask a cluster admin)`,
      references,
    );
  }
  if (!schedule)
    return invalid(
      "MissingSchedule",
      "spec.schedule",
      `task ${taskType} has no default schedule; set one`,
      references,
    );

  let resolved: string;
  try {
    resolved = resolveSchedule(schedule, metadata.namespace, metadata.name);
    validateResolvedSchedule(resolved);
  } catch (error) {
    if (!(error instanceof ScheduleError)) throw error;
    return invalid(
      "InvalidSchedule",
      "spec.schedule",
      `${JSON.stringify(schedule)} is not a valid schedule: ${error.message}`,
      references,
    );
  }
  if (spec.timeZone !== undefined) {
    try {
      validateTimeZone(spec.timeZone);
    } catch (error) {
      if (!(error instanceof ScheduleError)) throw error;
      return invalid("InvalidTimeZone", "spec.timeZone", error.message, references);
    }
  }
  if (spec.timeout !== undefined && parseDuration(spec.timeout) < 1000) {
    return invalid("InvalidTimeout", "spec.timeout", "must be at least 1s", references);
  }
  const podProblem = runPodProblem(spec);
  if (podProblem) return invalid("InvalidRunPod", podProblem.field, podProblem.message, references);
  return { valid: true, spec, taskType, schedule: resolved, timeZone: spec.timeZone, references };
}
