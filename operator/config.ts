// Operator configuration from flags and environment, validated with zod so a
// bad setting stops the operator at start with the setting named.
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { z } from "zod";
import { priorities } from "../crds/backgroundtask.ts";
import { parseDuration } from "../crds/duration.ts";

const boolish = z.union([
  z.boolean(),
  z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1"),
]);

/** The PriorityClasses (and WorkloadPriorityClasses) the chart creates. */
export const DEFAULT_PRIORITY_CLASSES =
  "low=nightshift-low,high=nightshift-high,critical=nightshift-critical";

/** "level=name,..." pairs, levels from spec.priority. */
function priorityMap(className: string) {
  return (v: string, ctx: z.RefinementCtx) => {
    const map: Partial<Record<(typeof priorities)[number], string>> = {};
    for (const pair of v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)) {
      const [priority, name] = pair.split("=");
      if (!priority || !name || !(priorities as readonly string[]).includes(priority)) {
        ctx.addIssue({
          code: "custom",
          message: `expected priority=${className} pairs with priority in ${priorities.join(", ")}, got ${JSON.stringify(pair)}`,
        });
        return z.NEVER;
      }
      map[priority as (typeof priorities)[number]] = name;
    }
    return map;
  };
}

/** A comma-separated setting as a list, blanks dropped; empty by default. */
const commaList = z
  .string()
  .default("")
  .transform((v) =>
    v
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  );

export const configSchema = z.object({
  namespaces: commaList.describe("Namespaces to watch, comma-separated; empty for all."),
  runnerImage: z
    .string()
    .min(1)
    .default("ghcr.io/nightshift-dev/task-runner:0.1.0")
    .describe("Image of the shared task runner."),
  runnerImagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  allowedImagePrefixes: commaList.describe(
    "Image prefixes a custom task's spec.container.image may start with, comma-separated; empty allows only the runner image.",
  ),
  workers: z.coerce.number().int().min(1).max(256).default(4).describe("Concurrent reconciles."),
  metricsAddress: z
    .string()
    .regex(/^[^:]*:\d+$|^\d+$/, "must be host:port or :port")
    .default(":8080"),
  leaderElect: boolish.default(true),
  leaderElectionNamespace: z
    .string()
    .min(1)
    .default(process.env.POD_NAMESPACE ?? "default"),
  leaderElectionId: z.string().min(1).default("nightshift-operator"),
  identity: z
    .string()
    .min(1)
    .default(process.env.POD_NAME ?? `${hostname()}-${process.pid}`),
  priorityClasses: z
    .string()
    .default(DEFAULT_PRIORITY_CLASSES)
    .transform(priorityMap("PriorityClass"))
    .describe(
      "Mapping of spec.priority to PriorityClass names, e.g. low=nightshift-low,high=nightshift-high; normal may stay unmapped (the cluster default).",
    ),
  workloadPriorityClasses: z
    .string()
    .transform(priorityMap("WorkloadPriorityClass"))
    .optional()
    .describe(
      "Mapping of spec.priority to Kueue WorkloadPriorityClass names for tasks with a queueName; the PriorityClass names by default.",
    ),
  startRate: z.coerce
    .number()
    .min(0)
    .default(0)
    .describe(
      "Cluster-wide limit on run starts per second (0: none); runs due together are spread by it.",
    ),
  startBurst: z.coerce
    .number()
    .int()
    .min(1)
    .optional()
    .describe("Runs that may start at once before the start rate applies; the rate by default."),
  queueSaturation: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .describe(
      "Pending workloads in a Kueue LocalQueue at which it counts as saturated and tasks of --deferred-priorities using it are deferred (0: never).",
    ),
  deferredPriorities: z
    .string()
    .default("low")
    .transform((v, ctx) => {
      const levels = v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const bad = levels.find((l) => !(priorities as readonly string[]).includes(l));
      if (bad) {
        ctx.addIssue({ code: "custom", message: `unknown priority ${JSON.stringify(bad)}` });
        return z.NEVER;
      }
      return levels as Array<(typeof priorities)[number]>;
    })
    .describe("Priority levels deferred while their queue is saturated."),
  maxDeferral: z
    .string()
    .default("1h")
    .transform((v, ctx) => {
      try {
        return parseDuration(v);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: String((error as Error).message) });
        return z.NEVER;
      }
    })
    .describe("Longest a task is deferred per saturation episode, e.g. 30m."),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
});

export type OperatorConfig = z.output<typeof configSchema>;

const ENV: Record<keyof OperatorConfig, string> = {
  namespaces: "NIGHTSHIFT_NAMESPACES",
  runnerImage: "NIGHTSHIFT_RUNNER_IMAGE",
  runnerImagePullPolicy: "NIGHTSHIFT_RUNNER_IMAGE_PULL_POLICY",
  allowedImagePrefixes: "NIGHTSHIFT_ALLOWED_IMAGE_PREFIXES",
  workers: "NIGHTSHIFT_WORKERS",
  metricsAddress: "NIGHTSHIFT_METRICS_ADDRESS",
  leaderElect: "NIGHTSHIFT_LEADER_ELECT",
  leaderElectionNamespace: "NIGHTSHIFT_LEADER_ELECTION_NAMESPACE",
  leaderElectionId: "NIGHTSHIFT_LEADER_ELECTION_ID",
  identity: "NIGHTSHIFT_IDENTITY",
  priorityClasses: "NIGHTSHIFT_PRIORITY_CLASSES",
  workloadPriorityClasses: "NIGHTSHIFT_WORKLOAD_PRIORITY_CLASSES",
  startRate: "NIGHTSHIFT_START_RATE",
  startBurst: "NIGHTSHIFT_START_BURST",
  queueSaturation: "NIGHTSHIFT_QUEUE_SATURATION",
  deferredPriorities: "NIGHTSHIFT_DEFERRED_PRIORITIES",
  maxDeferral: "NIGHTSHIFT_MAX_DEFERRAL",
  logLevel: "LOG_LEVEL",
};

const FLAGS: Record<keyof OperatorConfig, string> = {
  namespaces: "namespaces",
  runnerImage: "runner-image",
  runnerImagePullPolicy: "runner-image-pull-policy",
  allowedImagePrefixes: "allowed-image-prefixes",
  workers: "workers",
  metricsAddress: "metrics-address",
  leaderElect: "leader-elect",
  leaderElectionNamespace: "leader-election-namespace",
  leaderElectionId: "leader-election-id",
  identity: "identity",
  priorityClasses: "priority-classes",
  workloadPriorityClasses: "workload-priority-classes",
  startRate: "start-rate",
  startBurst: "start-burst",
  queueSaturation: "queue-saturation",
  deferredPriorities: "deferred-priorities",
  maxDeferral: "max-deferral",
  logLevel: "log-level",
};

/** Flags win over environment variables, which win over defaults. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      Object.values(FLAGS).map((flag) => [flag, { type: "string" as const }]),
    ),
    strict: true,
  });
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(FLAGS) as Array<keyof OperatorConfig>) {
    const value = values[FLAGS[key]] ?? env[ENV[key]];
    if (value !== undefined) raw[key] = value;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = issue.path[0] as keyof OperatorConfig;
      return `--${FLAGS[key]} / ${ENV[key]}: ${issue.message}`;
    });
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}
