// The BackgroundTask API, written once. The CRD YAML (generate.ts), the
// TypeScript types and the operator's runtime validation all derive from it.
import { z } from "zod";
import { duration } from "./duration.ts";
import { runPodFields, runPodRules } from "./run-pod.ts";

export const GROUP = "nightshift.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "BackgroundTask";
export const PLURAL = "backgroundtasks";

const cel = (rule: string, message: string, fieldPath?: string) => ({
  rule,
  message,
  ...(fieldPath ? { fieldPath } : {}),
});
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a lowercase DNS name");
const envVarName = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, "must be an environment variable name");
const quantity = z
  .string()
  .regex(
    /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/,
    "must be a Kubernetes quantity such as 500m or 256Mi",
  );

const keyRef = (what: string) =>
  z
    .object({
      name: dnsName.describe(`Name of the ${what} in the task's namespace.`),
      key: z.string().min(1).max(253).describe(`Key within the ${what}.`),
      optional: z.boolean().optional().describe(`Run even when the ${what} or key is missing.`),
    })
    .strict();

const envVar = z
  .object({
    name: envVarName.describe("Variable name."),
    value: z.string().optional().describe("Literal value."),
    valueFrom: z
      .object({
        secretKeyRef: keyRef("Secret").optional().describe("Value from a key of a Secret."),
        configMapKeyRef: keyRef("ConfigMap")
          .optional()
          .describe("Value from a key of a ConfigMap."),
      })
      .strict()
      .meta({
        "x-kubernetes-validations": [
          cel(
            "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            "exactly one of secretKeyRef or configMapKeyRef must be set",
          ),
        ],
      })
      .optional()
      .describe("Value from a Secret or ConfigMap in the task's namespace."),
  })
  .strict()
  .meta({
    "x-kubernetes-validations": [
      cel(
        "!(has(self.value) && has(self.valueFrom))",
        "value and valueFrom are mutually exclusive",
      ),
    ],
  });

const envFromSource = z
  .object({
    secretRef: z
      .object({ name: dnsName.describe("Secret name.") })
      .strict()
      .optional()
      .describe("Every key of a Secret."),
    configMapRef: z
      .object({ name: dnsName.describe("ConfigMap name.") })
      .strict()
      .optional()
      .describe("Every key of a ConfigMap."),
    prefix: envVarName.optional().describe("Prefix added to each variable name."),
  })
  .strict()
  .meta({
    "x-kubernetes-validations": [
      cel(
        "has(self.secretRef) != has(self.configMapRef)",
        "exactly one of secretRef or configMapRef must be set",
      ),
    ],
  });

const resourceList = z
  .object({
    cpu: quantity.optional().describe("CPU, e.g. 100m."),
    memory: quantity.optional().describe("Memory, e.g. 256Mi."),
    "ephemeral-storage": quantity.optional().describe("Scratch disk, e.g. 1Gi."),
  })
  .strict();

export const priorities = ["low", "normal", "high", "critical"] as const;

export const backgroundTaskSpec = z
  .object({
    task: z
      .string()
      .regex(
        /^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$/,
        "must be a catalogue task type such as email.process-queue",
      )
      .optional()
      .describe(
        "Built-in task type from the Nightshift catalogue, e.g. files.cleanup-temp. Exactly one of task or container.",
      ),
    params: z
      .record(z.string(), z.unknown())
      .meta({ "x-kubernetes-preserve-unknown-fields": true })
      .optional()
      .describe(
        "Parameters of the built-in task, validated against that task's schema. Only with task.",
      ),
    container: z
      .object({
        image: z.string().min(1).max(512).describe("Container image of the custom task."),
        command: z.array(z.string()).max(64).optional().describe("Entrypoint override."),
        args: z.array(z.string()).max(256).optional().describe("Arguments."),
      })
      .strict()
      .optional()
      .describe(
        "A custom task: the container to run, following the runner exit-code contract. Exactly one of task or container.",
      ),
    schedule: z
      .string()
      .min(1)
      .max(256)
      .optional()
      .describe(
        "Cron schedule (5 fields or @hourly, @daily, ...). H in a field picks a fixed value from the task's namespace/name, e.g. 'H 2 * * *', so many tasks at 2 AM do not start at once. Defaults to the catalogue task's schedule.",
      ),
    timeZone: z
      .string()
      .min(1)
      .max(64)
      .optional()
      .describe(
        "IANA time zone of the schedule, e.g. Europe/Berlin. Default: the controller manager's (UTC).",
      ),
    suspend: z.boolean().default(false).describe("Stop scheduling new runs; running ones finish."),
    concurrencyPolicy: z
      .enum(["Allow", "Forbid", "Replace"])
      .default("Forbid")
      .describe("What to do when a run is due while the previous one still runs."),
    startingDeadlineSeconds: z
      .int()
      .min(1)
      .max(86400)
      .optional()
      .describe("A run missed by more than this many seconds is skipped."),
    successfulRunsHistoryLimit: z
      .int()
      .min(0)
      .max(100)
      .default(3)
      .describe("Finished successful run Jobs kept."),
    failedRunsHistoryLimit: z
      .int()
      .min(0)
      .max(100)
      .default(3)
      .describe("Finished failed run Jobs kept."),
    timeout: duration(
      "Maximum duration of a run (Job activeDeadlineSeconds), e.g. 30m.",
    ).optional(),
    retry: z
      .object({
        limit: z
          .int()
          .min(0)
          .max(20)
          .default(0)
          .describe(
            "Retries of a failed pod within a run (Job backoffLimit). Exit codes 64, 65 and 78 are never retried.",
          ),
        backoff: z
          .object({
            initialDelay: duration("Delay before the first delayed retry run.").default("1m"),
            factor: z
              .number()
              .min(1)
              .max(10)
              .default(2)
              .describe("Multiplier applied to the delay after each retry run."),
            maxDelay: duration("Upper bound of the delay.").default("1h"),
            maxRetries: z
              .int()
              .min(0)
              .max(20)
              .default(3)
              .describe("Delayed retry runs after a failed run; 0 disables them."),
          })
          .strict()
          .meta({
            "x-kubernetes-validations": [
              cel(
                "duration(self.maxDelay) >= duration(self.initialDelay)",
                "maxDelay must not be shorter than initialDelay",
                ".maxDelay",
              ),
            ],
          })
          .optional()
          .describe(
            "Delayed retry runs, with exponential backoff and jitter, after a run fails for good.",
          ),
      })
      .strict()
      .optional()
      .describe("How hard to retry failures."),
    circuitBreaker: z
      .object({
        failureThreshold: z
          .int()
          .min(1)
          .max(1000)
          .default(5)
          .describe("Consecutive failed runs that open the circuit and suspend the schedule."),
        cooldown: duration("Time the circuit stays open before one trial run.").default("30m"),
        maxCooldown: duration(
          "Cap of the cooldown, which doubles after each failed trial.",
        ).default("24h"),
      })
      .strict()
      .optional()
      .describe("Stop scheduling a task that keeps failing."),
    resources: z
      .object({
        requests: resourceList.optional().describe("Resources reserved for the run."),
        limits: resourceList.optional().describe("Resource caps of the run."),
      })
      .strict()
      .optional()
      .describe("Compute resources of the run's container."),
    priority: z
      .enum(priorities)
      .default("normal")
      .describe("Scheduling priority; mapped to a PriorityClass by the operator's settings."),
    queueName: dnsName
      .max(63)
      .optional()
      .describe("Kueue LocalQueue to admit runs through (kueue.x-k8s.io/queue-name label)."),
    env: z
      .array(envVar)
      .max(100)
      .optional()
      .describe(
        "Environment variables of the run, from literals, Secrets or ConfigMaps in the same namespace.",
      ),
    envFrom: z
      .array(envFromSource)
      .max(20)
      .optional()
      .describe("Whole Secrets or ConfigMaps in the same namespace as environment variables."),
    serviceAccountName: dnsName.optional().describe("Service account the run's pod uses."),
    podMetadata: z
      .object({
        labels: z
          .record(z.string(), z.string().max(63))
          .optional()
          .describe("Labels added to each run's pod."),
        annotations: z
          .record(z.string(), z.string())
          .optional()
          .describe("Annotations added to each run's pod."),
      })
      .strict()
      .optional()
      .describe(
        "Labels and annotations for run pods, e.g. for sidecar injection or cost allocation.",
      ),
    ...runPodFields,
  })
  .strict()
  .meta({
    "x-kubernetes-validations": [
      cel(
        "has(self.task) != has(self.container)",
        "exactly one of spec.task or spec.container must be set",
      ),
      cel(
        "!has(self.params) || has(self.task)",
        "spec.params is only allowed with spec.task",
        ".params",
      ),
      cel(
        "has(self.task) || has(self.schedule)",
        "spec.schedule is required for a container task",
        ".schedule",
      ),
      ...runPodRules,
    ],
  });

const time = z.string().describe("RFC 3339 time.");

export const condition = z.object({
  type: z.string().describe("Condition type: Ready, SpecValid, Suspended, CircuitOpen."),
  status: z.enum(["True", "False", "Unknown"]).describe("True, False or Unknown."),
  reason: z.string().describe("Machine-readable CamelCase reason."),
  message: z.string().describe("Human-readable explanation."),
  lastTransitionTime: time.describe("When the status last changed."),
  observedGeneration: z.int().optional().describe("Generation the condition was computed from."),
});

export const phases = [
  "Pending",
  "Ready",
  "Running",
  "Queued",
  "Suspended",
  "Invalid",
  "Failing",
  "CircuitOpen",
] as const;

export const backgroundTaskStatus = z.object({
  observedGeneration: z.int().optional().describe("Generation of the spec last processed."),
  phase: z
    .enum(phases)
    .optional()
    .describe(
      "One-word summary: Pending, Ready, Running, Queued, Suspended, Invalid, Failing or CircuitOpen.",
    ),
  conditions: z
    .array(condition)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] })
    .describe("Ready, SpecValid, Suspended and CircuitOpen conditions."),
  task: z.string().optional().describe("Catalogue task type, or 'container' for a custom task."),
  schedule: z.string().optional().describe("Schedule in effect, with H expanded."),
  timeZone: z.string().optional().describe("Time zone in effect."),
  cronJobName: z.string().optional().describe("Name of the CronJob that runs this task."),
  nextScheduleTime: time.optional().describe("When the next scheduled run is due."),
  lastScheduleTime: time.optional().describe("When the last run was started."),
  lastSuccessTime: time.optional().describe("When the last successful run finished."),
  lastFailureTime: time.optional().describe("When the last failed run finished."),
  runs: z
    .object({
      total: z.int().describe("Finished runs recorded."),
      succeeded: z.int().describe("Successful runs."),
      failed: z.int().describe("Failed runs."),
    })
    .optional()
    .describe("Run counters, each finished run counted exactly once."),
  consecutiveFailures: z.int().optional().describe("Failed runs since the last success."),
  active: z
    .array(
      z.object({
        name: z.string().describe("Job name."),
        startTime: time.optional().describe("Start."),
        queuedSince: time
          .optional()
          .describe("Set while the run waits in its Kueue queue for admission: since when."),
      }),
    )
    .optional()
    .describe("Runs in progress or queued."),
  lastRun: z
    .object({
      jobName: z.string().describe("Job of the run."),
      outcome: z.enum(["Succeeded", "Failed"]).describe("Succeeded or Failed."),
      startTime: time.optional().describe("Start."),
      completionTime: time.optional().describe("End."),
      durationSeconds: z.number().optional().describe("Duration in seconds."),
      exitCode: z.int().optional().describe("Exit code of the runner."),
      queuedSeconds: z
        .int()
        .optional()
        .describe("Seconds the run waited in its Kueue queue before admission."),
      reason: z
        .string()
        .optional()
        .describe("Why it ended, e.g. BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy."),
      message: z
        .string()
        .optional()
        .describe("Result or message reported by the runner (bounded)."),
    })
    .optional()
    .describe("The most recent finished run."),
  recordedJobs: z
    .array(z.string())
    .optional()
    .describe("UIDs of the most recently recorded run Jobs, so no run is counted twice."),
  circuit: z
    .object({
      state: z.enum(["Closed", "Open", "HalfOpen"]).describe("Closed, Open or HalfOpen."),
      openedAt: time.optional().describe("When the circuit last opened."),
      cooldownSeconds: z.int().optional().describe("Current cooldown."),
      trialJobName: z.string().optional().describe("Job of the half-open trial run."),
      trialStartedAt: time
        .optional()
        .describe("When the trial run started; it counts as failed if it outlives its timeout."),
      lastResetValue: z
        .string()
        .optional()
        .describe("Last nightshift.dev/reset-circuit annotation value acted on."),
    })
    .optional()
    .describe("Circuit breaker state."),
  retry: z
    .object({
      attempt: z.int().describe("Delayed retry runs started since the last failed scheduled run."),
      nextRetryTime: time.optional().describe("When the next delayed retry run starts."),
      jobName: z
        .string()
        .optional()
        .describe("Job of the delayed retry run, planned (with nextRetryTime) or in progress."),
    })
    .optional()
    .describe("Delayed retry state."),
  lastRunNowValue: z
    .string()
    .optional()
    .describe("Last nightshift.dev/run-now annotation value acted on."),
  deferral: z
    .object({
      since: time.describe("When the current deferral episode began."),
      active: z
        .boolean()
        .describe("True while runs are held back; false once the longest deferral was reached."),
      message: z.string().optional().describe("Why runs are held back."),
    })
    .optional()
    .describe("Set while a low-priority task's runs are deferred because its queue is saturated."),
});

export const backgroundTask = z.object({
  apiVersion: z.string().optional().describe("nightshift.dev/v1alpha1"),
  kind: z.string().optional().describe("BackgroundTask"),
  metadata: z.object({}).optional(),
  spec: backgroundTaskSpec.describe("What to run, when, how hard to retry and when to give up."),
  status: backgroundTaskStatus.optional().describe("Observed state, written by the operator."),
});

export type BackgroundTaskSpecInput = z.input<typeof backgroundTaskSpec>;
export type BackgroundTaskSpec = z.output<typeof backgroundTaskSpec>;
export type BackgroundTaskStatus = z.output<typeof backgroundTaskStatus>;
export type Condition = z.output<typeof condition>;

export interface BackgroundTaskObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  spec: BackgroundTaskSpecInput;
  status?: BackgroundTaskStatus;
}
