// The CronJob a BackgroundTask should have: a pure function of the task, its
// validation and the operator's settings. Nothing here talks to the cluster.
import { hash } from "node:crypto";
import { API_VERSION, type BackgroundTaskObject, KIND } from "../../crds/backgroundtask.ts";
import { parseDuration } from "../../crds/duration.ts";
import { SCRATCH_VOLUME } from "../../crds/run-pod.ts";
import type { OperatorConfig } from "../config.ts";
import {
  cronJobName,
  QUEUE_LABEL,
  RUNNER_CONTAINER,
  TASK_NAME_ANNOTATION,
  TASK_UID_ANNOTATION,
  TEMPLATE_HASH_ANNOTATION,
  taskLabels,
} from "./labels.ts";
import { sameQuantity } from "./quantity.ts";
import { resolvePriority, WORKLOAD_PRIORITY_LABEL } from "./queueing.ts";
import { START_GATE } from "./start-rate.ts";
import type { ValidTask } from "./validate.ts";

export type CronJobSettings = Pick<
  OperatorConfig,
  "runnerImage" | "runnerImagePullPolicy" | "priorityClasses"
> &
  Partial<Pick<OperatorConfig, "workloadPriorityClasses" | "startRate">>;

/** History limit set on CronJobs: effectively unlimited, see desiredCronJob. */
export const CRONJOB_HISTORY_LIMIT = 1_000_000;

/** Exit codes of the runner contract that mean "retrying cannot help": bad usage, bad data, bad config. */
export const PERMANENT_EXIT_CODES = [64, 65, 78];

export interface CronJob {
  apiVersion: "batch/v1";
  kind: "CronJob";
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller: boolean;
      blockOwnerDeletion: boolean;
    }>;
  };
  spec: Record<string, unknown> & {
    jobTemplate: { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  };
}

function runnerContainer(
  task: BackgroundTaskObject,
  valid: ValidTask,
  settings: CronJobSettings,
): Record<string, unknown> {
  const spec = valid.spec;
  const env: Array<Record<string, unknown>> = [];
  let image = settings.runnerImage;
  let command: string[] | undefined;
  let args: string[] | undefined;
  let imagePullPolicy: string | undefined = settings.runnerImagePullPolicy;
  if (valid.taskType === "container") {
    image = spec.container?.image ?? image;
    command = spec.container?.command;
    args = spec.container?.args;
    imagePullPolicy = undefined;
  } else {
    args = ["run", valid.taskType];
    env.push({ name: "NIGHTSHIFT_TASK", value: valid.taskType });
    // The params as the user wrote them: the runner applies defaults with the same schema.
    env.push({ name: "NIGHTSHIFT_PARAMS", value: JSON.stringify(task.spec.params ?? {}) });
  }
  env.push(
    { name: "NIGHTSHIFT_TASK_NAME", value: task.metadata.name },
    { name: "NIGHTSHIFT_TASK_NAMESPACE", value: task.metadata.namespace },
  );
  for (const e of spec.env ?? []) env.push({ ...e });
  const container: Record<string, unknown> = {
    name: RUNNER_CONTAINER,
    image,
    ...(imagePullPolicy ? { imagePullPolicy } : {}),
    ...(command ? { command } : {}),
    ...(args ? { args } : {}),
    env,
    ...(spec.envFrom ? { envFrom: spec.envFrom.map((e) => ({ ...e })) } : {}),
    ...(spec.resources ? { resources: spec.resources } : {}),
    volumeMounts: runnerVolumeMounts(valid),
    terminationMessagePath: "/dev/termination-log",
    terminationMessagePolicy: "FallbackToLogsOnError",
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    },
  };
  return container;
}

/** The task's mounts, plus a writable /tmp unless the task mounts something there itself. */
function runnerVolumeMounts(valid: ValidTask): Array<Record<string, unknown>> {
  const mounts = (valid.spec.volumeMounts ?? []).map((m) => ({ ...m }));
  if (!mounts.some((m) => m.mountPath === "/tmp"))
    mounts.push({ name: SCRATCH_VOLUME, mountPath: "/tmp" });
  return mounts;
}

/** Storage and placement of the run pod: spec.volumes (+ the /tmp scratch), selectors, pull secrets. */
function runPodSpec(valid: ValidTask): Record<string, unknown> {
  const spec = valid.spec;
  const volumes = (spec.volumes ?? []).map((v) => ({ ...v }));
  const scratchUsed = runnerVolumeMounts(valid).some((m) => m.name === SCRATCH_VOLUME);
  if (scratchUsed) volumes.push({ name: SCRATCH_VOLUME, emptyDir: {} });
  return {
    volumes,
    ...(spec.nodeSelector ? { nodeSelector: { ...spec.nodeSelector } } : {}),
    ...(spec.tolerations ? { tolerations: spec.tolerations.map((t) => ({ ...t })) } : {}),
    ...(spec.affinity ? { affinity: spec.affinity } : {}),
    ...(spec.imagePullSecrets
      ? { imagePullSecrets: spec.imagePullSecrets.map((s) => ({ ...s })) }
      : {}),
  };
}

export function desiredCronJob(
  task: BackgroundTaskObject,
  valid: ValidTask,
  settings: CronJobSettings,
  circuitOpen = false,
): CronJob {
  const spec = valid.spec;
  const labels = taskLabels(task.metadata.name, valid.taskType);
  const priority = resolvePriority(spec, settings);
  const { priorityClassName, workloadPriorityClass } = "unmapped" in priority ? {} : priority;
  const jobLabels = {
    ...labels,
    ...(spec.queueName ? { [QUEUE_LABEL]: spec.queueName } : {}),
    ...(workloadPriorityClass ? { [WORKLOAD_PRIORITY_LABEL]: workloadPriorityClass } : {}),
  };
  const podLabels = { ...(spec.podMetadata?.labels ?? {}), ...labels };
  const annotations = { [TASK_NAME_ANNOTATION]: task.metadata.name };

  const jobSpec: Record<string, unknown> = {
    // Queued runs wait suspended until Kueue admits them (it would suspend them anyway).
    ...(spec.queueName ? { suspend: true } : {}),
    backoffLimit: spec.retry?.limit ?? 0,
    ...(spec.timeout
      ? { activeDeadlineSeconds: Math.ceil(parseDuration(spec.timeout) / 1000) }
      : {}),
    podFailurePolicy: {
      rules: [
        {
          action: "FailJob",
          onExitCodes: {
            containerName: RUNNER_CONTAINER,
            operator: "In",
            values: PERMANENT_EXIT_CODES,
          },
        },
        // Evictions and preemptions are not the task's fault: retry without spending the budget.
        { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
      ],
    },
    template: {
      metadata: {
        labels: podLabels,
        annotations: { ...(spec.podMetadata?.annotations ?? {}), ...annotations },
      },
      spec: {
        restartPolicy: "Never",
        // Runs get an API token only from a service account the task names; the
        // namespace's default account is never handed to a run implicitly.
        ...(spec.serviceAccountName
          ? { serviceAccountName: spec.serviceAccountName }
          : { automountServiceAccountToken: false }),
        ...(priorityClassName ? { priorityClassName } : {}),
        // Released by the operator at the cluster-wide start rate.
        ...(settings.startRate ? { schedulingGates: [{ name: START_GATE }] } : {}),
        // Pod Security "restricted": non-root, RuntimeDefault seccomp; the group
        // owns mounted volumes, so the non-root runner can write to them.
        securityContext: {
          runAsNonRoot: true,
          seccompProfile: { type: "RuntimeDefault" },
          ...(valid.spec.volumes?.length ? { fsGroup: 65532 } : {}),
        },
        containers: [runnerContainer(task, valid, settings)],
        ...runPodSpec(valid),
      },
    },
  };

  const cronSpec: CronJob["spec"] = {
    schedule: valid.schedule,
    ...(valid.timeZone ? { timeZone: valid.timeZone } : {}),
    suspend: spec.suspend || circuitOpen,
    concurrencyPolicy: spec.concurrencyPolicy,
    ...(spec.startingDeadlineSeconds !== undefined
      ? { startingDeadlineSeconds: spec.startingDeadlineSeconds }
      : {}),
    // The operator prunes run Jobs itself, after recording them (spec.*RunsHistoryLimit);
    // the CronJob controller must never delete a run the operator has not counted yet.
    successfulJobsHistoryLimit: CRONJOB_HISTORY_LIMIT,
    failedJobsHistoryLimit: CRONJOB_HISTORY_LIMIT,
    // Runs carry the task's UID: a task deleted and re-created under the same name never adopts the old one's runs.
    jobTemplate: {
      metadata: {
        labels: jobLabels,
        annotations: { ...annotations, [TASK_UID_ANNOTATION]: task.metadata.uid },
      },
      spec: jobSpec,
    },
  };

  const cronJob: CronJob = {
    apiVersion: "batch/v1",
    kind: "CronJob",
    metadata: {
      name: cronJobName(task.metadata.name),
      namespace: task.metadata.namespace,
      labels,
      annotations: { ...annotations },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: KIND,
          name: task.metadata.name,
          uid: task.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: cronSpec,
  };
  cronJob.metadata.annotations[TEMPLATE_HASH_ANNOTATION] = templateHash(cronJob);
  return cronJob;
}

/** Hash of everything the operator sets, recorded on the CronJob to notice when the desired state changed. */
export function templateHash(cronJob: CronJob): string {
  const { annotations, ...metadata } = cronJob.metadata;
  const { [TEMPLATE_HASH_ANNOTATION]: _ignored, ...rest } = annotations;
  const text = JSON.stringify({ metadata: { ...metadata, annotations: rest }, spec: cronJob.spec });
  return hash("sha256", text, "hex").slice(0, 16);
}

/**
 * Why the live CronJob differs from the desired one, or undefined when it
 * already carries everything desired: the same template hash and every
 * desired field with the same value (the live object may have more, such as
 * defaults). Anything else is a change or drift to repair.
 */
export function cronJobDrift(
  desired: CronJob,
  live: { metadata: { annotations?: Record<string, string> } } | undefined,
): string | undefined {
  if (!live) return "missing";
  if (
    live.metadata.annotations?.[TEMPLATE_HASH_ANNOTATION] !==
    desired.metadata.annotations[TEMPLATE_HASH_ANNOTATION]
  )
    return "task changed";
  // apiVersion and kind are not compared: list responses omit them from items.
  const path = firstDifference({ metadata: desired.metadata, spec: desired.spec }, live, "");
  return path === undefined ? undefined : `drift at ${path}`;
}

function firstDifference(desired: unknown, live: unknown, path: string): string | undefined {
  if (Array.isArray(desired)) {
    if (!Array.isArray(live) || live.length !== desired.length) return path;
    for (let i = 0; i < desired.length; i++) {
      const found = firstDifference(desired[i], live[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (desired && typeof desired === "object") {
    if (!live || typeof live !== "object") return path;
    for (const [key, value] of Object.entries(desired)) {
      const found = firstDifference(
        value,
        (live as Record<string, unknown>)[key],
        `${path}.${key}`,
      );
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (desired === live) return undefined;
  // The apiserver stores quantities in canonical form ("0.5" → "500m"): equal amounts are no drift.
  if (/(\.resources\.|\.sizeLimit$)/.test(path) && sameQuantity(desired, live)) return undefined;
  return path;
}
