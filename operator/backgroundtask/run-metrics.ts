// Nightshift's own Prometheus metrics about runs, beside controller-runtime's:
// outcomes by task and reason, durations, schedule lag, queue wait, retries
// and circuit transitions. Labels are bounded: namespace, task name and small
// enums, never Job names or times. What a finished run contributes is decided
// purely (runObservation); RunMetrics only carries it into prom-client.
import { Counter, Histogram, type Registry } from "prom-client";
import type { FinishedRun } from "./runs.ts";

/** Set by the CronJob controller on every Job it creates: the time the schedule asked for. */
export const SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp";

export type CircuitState = "Closed" | "Open" | "HalfOpen";

export interface RunObservation {
  outcome: "Succeeded" | "Failed";
  /** Why the run ended: Completed for successes, else the Job's failure reason. */
  reason: string;
  durationSeconds?: number;
  /** Start of a scheduled run minus the time its schedule asked for. */
  scheduleLagSeconds?: number;
  /** Time from the Job's creation until it started (admission, e.g. by Kueue). */
  queueWaitSeconds?: number;
}

interface ObservedJob {
  metadata: { creationTimestamp?: string; annotations?: Record<string, string> };
  status?: { startTime?: string };
}

const seconds = (from: string | undefined, to: string | undefined): number | undefined => {
  if (!from || !to) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? Math.max(0, ms / 1000) : undefined;
};

export function runObservation(
  run: Pick<FinishedRun, "outcome" | "reason" | "finishedAt"> & {
    job: ObservedJob;
  },
): RunObservation {
  const { job } = run;
  const start = job.status?.startTime;
  const observation: RunObservation = {
    outcome: run.outcome,
    reason: run.outcome === "Succeeded" ? "Completed" : (run.reason ?? "Unknown"),
  };
  const duration = seconds(start ?? job.metadata.creationTimestamp, run.finishedAt);
  if (duration !== undefined) observation.durationSeconds = duration;
  const lag = seconds(job.metadata.annotations?.[SCHEDULED_TIMESTAMP_ANNOTATION], start);
  if (lag !== undefined) observation.scheduleLagSeconds = lag;
  const wait = seconds(job.metadata.creationTimestamp, start);
  if (wait !== undefined) observation.queueWaitSeconds = wait;
  return observation;
}

/** The state the circuit moved to, or undefined when it did not move (no circuit counts as Closed). */
export function circuitTransition(
  before: { state: CircuitState } | undefined,
  after: { state: CircuitState } | undefined,
): CircuitState | undefined {
  const from = before?.state ?? "Closed";
  const to = after?.state ?? "Closed";
  return from === to ? undefined : to;
}

const durationBuckets = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];
const lagBuckets = [1, 5, 15, 30, 60, 300, 900, 3600];

export class RunMetrics {
  private readonly runs: Counter<"namespace" | "backgroundtask" | "outcome" | "reason">;
  private readonly duration: Histogram<"namespace" | "backgroundtask">;
  private readonly scheduleLag: Histogram<"namespace" | "backgroundtask">;
  private readonly queueWait: Histogram<"namespace" | "backgroundtask">;
  private readonly retries: Counter<"namespace" | "backgroundtask">;
  private readonly circuit: Counter<"namespace" | "backgroundtask" | "to">;
  /** Label sets written per task, so a deleted task's series can be dropped. */
  private readonly written = new Map<string, Map<string, () => void>>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: "nightshift_runs_total",
      help: "Finished runs recorded in a BackgroundTask's status, by outcome and reason (Completed, BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy, Deleted).",
      labelNames: ["namespace", "backgroundtask", "outcome", "reason"] as const,
      registers,
    });
    this.duration = new Histogram({
      name: "nightshift_run_duration_seconds",
      help: "Duration of finished runs, from the Job's start to its end.",
      labelNames: ["namespace", "backgroundtask"] as const,
      buckets: durationBuckets,
      registers,
    });
    this.scheduleLag = new Histogram({
      name: "nightshift_run_schedule_lag_seconds",
      help: "How late scheduled runs started against the time their schedule asked for.",
      labelNames: ["namespace", "backgroundtask"] as const,
      buckets: lagBuckets,
      registers,
    });
    this.queueWait = new Histogram({
      name: "nightshift_run_queue_wait_seconds",
      help: "Time runs waited between their Job's creation and its start (admission, e.g. by Kueue).",
      labelNames: ["namespace", "backgroundtask"] as const,
      buckets: lagBuckets,
      registers,
    });
    this.retries = new Counter({
      name: "nightshift_retries_started_total",
      help: "Delayed retry runs the operator started after failed runs.",
      labelNames: ["namespace", "backgroundtask"] as const,
      registers,
    });
    this.circuit = new Counter({
      name: "nightshift_circuit_transitions_total",
      help: "Circuit breaker transitions, by the state moved to (Open, HalfOpen, Closed).",
      labelNames: ["namespace", "backgroundtask", "to"] as const,
      registers,
    });
  }

  /** A run whose outcome was just written to its task's status (so each run is observed once). */
  observeRunFinished(namespace: string, task: string, run: Parameters<typeof runObservation>[0]) {
    const o = runObservation(run);
    const labels = { namespace, backgroundtask: task };
    this.track("runs", namespace, task, this.runs, {
      ...labels,
      outcome: o.outcome,
      reason: o.reason,
    });
    this.runs.inc({ ...labels, outcome: o.outcome, reason: o.reason });
    this.track("duration", namespace, task, this.duration, labels);
    if (o.durationSeconds !== undefined) this.duration.observe(labels, o.durationSeconds);
    if (o.scheduleLagSeconds !== undefined) {
      this.track("lag", namespace, task, this.scheduleLag, labels);
      this.scheduleLag.observe(labels, o.scheduleLagSeconds);
    }
    if (o.queueWaitSeconds !== undefined) {
      this.track("wait", namespace, task, this.queueWait, labels);
      this.queueWait.observe(labels, o.queueWaitSeconds);
    }
  }

  retryStarted(namespace: string, task: string): void {
    const labels = { namespace, backgroundtask: task };
    this.track("retries", namespace, task, this.retries, labels);
    this.retries.inc(labels);
  }

  circuitTransition(namespace: string, task: string, to: CircuitState): void {
    const labels = { namespace, backgroundtask: task, to };
    this.track("circuit", namespace, task, this.circuit, labels);
    this.circuit.inc(labels);
  }

  /** Drops every series of a deleted task. */
  forget(namespace: string, task: string): void {
    const key = `${namespace}/${task}`;
    for (const remove of this.written.get(key)?.values() ?? []) remove();
    this.written.delete(key);
  }

  private track<L extends string>(
    name: string,
    namespace: string,
    task: string,
    metric: Counter<L> | Histogram<L>,
    labels: Record<L, string>,
  ): void {
    const key = `${namespace}/${task}`;
    const removers = this.written.get(key) ?? new Map<string, () => void>();
    const id = `${name} ${JSON.stringify(labels)}`;
    if (!removers.has(id)) removers.set(id, () => metric.remove(labels));
    this.written.set(key, removers);
  }
}
