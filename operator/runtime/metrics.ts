// Prometheus metrics under the names controller-runtime uses, so existing
// dashboards and alerts for Go operators work unchanged, plus leader status.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface QueueMetrics {
  depth: Gauge<"name">;
  adds: Counter<"name">;
  retries: Counter<"name">;
  queueDuration: Histogram<"name">;
  workDuration: Histogram<"name">;
}

const durationBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({
    name: "controller_runtime_reconcile_total",
    help: "Total number of reconciliations per controller",
    labelNames: ["controller", "result"] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: "controller_runtime_reconcile_errors_total",
    help: "Total number of reconciliation errors per controller",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly reconcileTime = new Histogram({
    name: "controller_runtime_reconcile_time_seconds",
    help: "Length of time per reconciliation per controller",
    labelNames: ["controller"] as const,
    buckets: durationBuckets,
    registers: [this.registry],
  });
  readonly activeWorkers = new Gauge({
    name: "controller_runtime_active_workers",
    help: "Number of currently used workers per controller",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly maxConcurrentReconciles = new Gauge({
    name: "controller_runtime_max_concurrent_reconciles",
    help: "Maximum number of concurrent reconciles per controller",
    labelNames: ["controller"] as const,
    registers: [this.registry],
  });
  readonly leaderStatus = new Gauge({
    name: "leader_election_master_status",
    help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.",
    labelNames: ["name"] as const,
    registers: [this.registry],
  });
  readonly queue: QueueMetrics = {
    depth: new Gauge({
      name: "workqueue_depth",
      help: "Current depth of workqueue",
      labelNames: ["name"] as const,
      registers: [this.registry],
    }),
    adds: new Counter({
      name: "workqueue_adds_total",
      help: "Total number of adds handled by workqueue",
      labelNames: ["name"] as const,
      registers: [this.registry],
    }),
    retries: new Counter({
      name: "workqueue_retries_total",
      help: "Total number of retries handled by workqueue",
      labelNames: ["name"] as const,
      registers: [this.registry],
    }),
    queueDuration: new Histogram({
      name: "workqueue_queue_duration_seconds",
      help: "How long in seconds an item stays in workqueue before being requested",
      labelNames: ["name"] as const,
      buckets: durationBuckets,
      registers: [this.registry],
    }),
    workDuration: new Histogram({
      name: "workqueue_work_duration_seconds",
      help: "How long in seconds processing an item from workqueue takes",
      labelNames: ["name"] as const,
      buckets: durationBuckets,
      registers: [this.registry],
    }),
  };

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Gauges read from live objects at scrape time. */
  watchQueue(
    queueName: string,
    queue: { longestRunningSeconds(): number; unfinishedWorkSeconds(): number },
  ): void {
    new Gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How many seconds has the longest running processor for workqueue been running.",
      labelNames: ["name"] as const,
      registers: [this.registry],
      collect() {
        this.set({ name: queueName }, queue.longestRunningSeconds());
      },
    });
    new Gauge({
      name: "workqueue_unfinished_work_seconds",
      help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration.",
      labelNames: ["name"] as const,
      registers: [this.registry],
      collect() {
        this.set({ name: queueName }, queue.unfinishedWorkSeconds());
      },
    });
  }

  /** The client's requests by verb, credential rejections and fenced writes, read at scrape time. */
  watchClient(client: {
    requestCounts: Record<string, number>;
    authFailures: Record<string, number>;
    refusedWrites: number;
    credentialsRejected: boolean;
  }): void {
    new Gauge({
      name: "nightshift_apiserver_requests",
      help: "API requests made by the operator since start, by verb.",
      labelNames: ["verb"] as const,
      registers: [this.registry],
      collect() {
        for (const [verb, count] of Object.entries(client.requestCounts)) this.set({ verb }, count);
      },
    });
    new Gauge({
      name: "nightshift_apiserver_auth_failures",
      help: "Requests the apiserver answered 401 (credentials rejected) or 403 (forbidden) since start, by code.",
      labelNames: ["code"] as const,
      registers: [this.registry],
      collect() {
        for (const [code, count] of Object.entries(client.authFailures)) this.set({ code }, count);
      },
    });
    new Gauge({
      name: "nightshift_apiserver_credentials_rejected",
      help: "1 while the apiserver keeps rejecting the operator's credentials (401/403, even after re-reading them), else 0.",
      registers: [this.registry],
      collect() {
        this.set(client.credentialsRejected ? 1 : 0);
      },
    });
    new Gauge({
      name: "nightshift_writes_refused",
      help: "Writes not sent because this replica could no longer be sure it held the lease.",
      registers: [this.registry],
      collect() {
        this.set(client.refusedWrites);
      },
    });
  }
}
