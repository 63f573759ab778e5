// When the apiserver refuses the desired CronJob, the task's spec is what is
// wrong: say so in the task's own words (SpecValid=False naming the task's
// field, with the apiserver's reason) instead of retrying forever.
//
// Why the apiserver judges and not a copy of its rules: Kubernetes validates
// cron syntax, time zones, label keys, quantities and integer ranges with its
// own code, and any re-implementation drifts from it (that is how "@HOURLY",
// "0 0 * * 7" and "europe/berlin" slipped through). The server-side apply of
// the desired CronJob is itself the dry run: a refused apply changes nothing,
// so no separate dryRun request is needed; the refusal is remembered per
// generation and template so a refused spec is not re-sent on every resync.
import type { StatusCause } from "../runtime/kube-client.ts";
import type { InvalidTask, Validation } from "./validate.ts";

export interface Rejection {
  /** The task generation and desired-CronJob hash the apiserver refused. */
  generation: number | undefined;
  templateHash: string;
  field: string;
  message: string;
}

export const REJECTED_REASON = "RejectedByAPIServer";

// CronJob field paths → the task field a user wrote, most specific first.
const FIELD_MAP: Array<[RegExp, string]> = [
  [/^spec\.schedule/, "spec.schedule"],
  [/^spec\.timeZone/, "spec.timeZone"],
  [/^spec\.startingDeadlineSeconds/, "spec.startingDeadlineSeconds"],
  [/^spec\.concurrencyPolicy/, "spec.concurrencyPolicy"],
  [/^spec\.jobTemplate\.spec\.activeDeadlineSeconds/, "spec.timeout"],
  [/^spec\.jobTemplate\.spec\.backoffLimit/, "spec.retry.limit"],
  [/^spec\.jobTemplate\.metadata\.labels/, "spec.queueName"],
  // The apiserver names pod labels both ways, with and without ".metadata".
  [/^spec\.jobTemplate\.spec\.template\.(metadata\.)?labels/, "spec.podMetadata.labels"],
  [/^spec\.jobTemplate\.spec\.template\.(metadata\.)?annotations/, "spec.podMetadata.annotations"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.priorityClassName/, "spec.priority"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.serviceAccountName/, "spec.serviceAccountName"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.volumes/, "spec.volumes"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.nodeSelector/, "spec.nodeSelector"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.tolerations/, "spec.tolerations"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.affinity/, "spec.affinity"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.imagePullSecrets/, "spec.imagePullSecrets"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.resources/, "spec.resources"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.envFrom/, "spec.envFrom"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.env/, "spec.env"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.volumeMounts/, "spec.volumeMounts"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.image/, "spec.container.image"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.command/, "spec.container.command"],
  [/^spec\.jobTemplate\.spec\.template\.spec\.containers\[0\]\.args/, "spec.container.args"],
];

// Decoding errors (400) carry no causes, only Go's message naming the field.
const MESSAGE_MAP: Array<[RegExp, string]> = [
  [/activeDeadlineSeconds/, "spec.timeout"],
  [/startingDeadlineSeconds/, "spec.startingDeadlineSeconds"],
  [/backoffLimit/, "spec.retry.limit"],
  [/\bschedule\b/, "spec.schedule"],
  [/timeZone/, "spec.timeZone"],
  [/\bresources\b|quantities/, "spec.resources"],
];

/** The task field a CronJob field comes from, or undefined when the operator, not the spec, set it. */
export function taskFieldOf(cronJobField: string): string | undefined {
  return FIELD_MAP.find(([pattern]) => pattern.test(cronJobField))?.[1];
}

/**
 * The spec's fault in an apiserver refusal of the desired CronJob, or
 * undefined when the refusal is not about the spec (a conflict, an owner
 * reference of a task being replaced): those are retried.
 */
export function rejectionFrom(
  error: { statusCode: number; statusMessage: string; causes: StatusCause[] },
  generation: number | undefined,
  templateHash: string,
): Rejection | undefined {
  if (error.statusCode !== 422 && error.statusCode !== 400) return undefined;
  const found = error.causes
    .map((cause) => ({ cause, field: cause.field ? taskFieldOf(cause.field) : undefined }))
    .filter((c) => c.field !== undefined);
  let field = found[0]?.field;
  // A refused field under spec that no mapping knows is still the spec's doing: name the spec.
  if (!field && error.causes.some((c) => c.field?.startsWith("spec."))) field = "spec";
  if (!field && error.causes.length === 0)
    field = MESSAGE_MAP.find(([pattern]) => pattern.test(error.statusMessage))?.[1];
  if (!field) return undefined;
  const message = error.causes.length
    ? error.causes
        .map((cause) => `${cause.field}: ${cause.message ?? cause.reason ?? "invalid"}`)
        .join("; ")
    : error.statusMessage;
  return { generation, templateHash, field, message: `Kubernetes refused the CronJob: ${message}` };
}

/** The task's validation once the apiserver has refused its CronJob. */
export function rejectedValidation(validation: Validation, rejection: Rejection): InvalidTask {
  return {
    valid: false,
    reason: REJECTED_REASON,
    field: rejection.field,
    message: `${rejection.field}: ${rejection.message}`,
    references: validation.references,
  };
}
