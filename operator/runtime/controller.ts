// The controller loop, with controller-runtime's outcome → queue semantics:
// an error re-queues the key with per-key backoff; a RequeueAfter result
// forgets the failures and schedules the key; success forgets the key.
import type { Logger } from "pino";
import type { OperatorMetrics } from "./metrics.ts";
import { WorkQueue } from "./workqueue.ts";

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type Reconciler = (key: string) => Promise<ReconcileResult | undefined>;

export class Controller {
  readonly queue: WorkQueue;
  /** Reconciles finished, whatever their result. */
  reconciled = 0;
  /** Reconciles running now. */
  busy = 0;
  /** Called after every reconcile, whatever its result. */
  onReconciled?: () => void;
  private running: Promise<void>[] = [];

  readonly name: string;
  private readonly reconcile: Reconciler;
  private readonly workers: number;
  private readonly log: Logger;
  private readonly metrics: OperatorMetrics;

  constructor(
    name: string,
    reconcile: Reconciler,
    workers: number,
    log: Logger,
    metrics: OperatorMetrics,
  ) {
    this.name = name;
    this.reconcile = reconcile;
    this.workers = workers;
    this.log = log;
    this.metrics = metrics;
    this.queue = new WorkQueue(name, metrics?.queue);
    metrics?.watchQueue(name, this.queue);
    metrics?.maxConcurrentReconciles.set({ controller: name }, workers);
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  /** Nothing queued and nothing running. */
  get idle(): boolean {
    return this.busy === 0 && this.queue.length === 0;
  }

  start(): void {
    for (let i = 0; i < this.workers; i++) this.running.push(this.worker());
  }

  /**
   * Stops handing out keys at once and waits up to graceMs for the reconciles
   * in flight; returns how many were still running when the grace ran out.
   */
  async stop(graceMs = Number.POSITIVE_INFINITY): Promise<number> {
    this.queue.shutdown();
    let inFlight = this.running.length;
    const finished = this.running.map((worker) => worker.then(() => void inFlight--));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(finished),
      new Promise<void>((resolve) => {
        if (Number.isFinite(graceMs)) timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    this.running = [];
    return inFlight;
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      await this.process(key);
    }
  }

  private async process(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    this.busy++;
    this.metrics?.activeWorkers.inc({ controller: this.name });
    try {
      const result = await this.reconcile(key);
      if (result?.requeueAfterMs !== undefined) {
        this.queue.forget(key);
        this.queue.addAfter(key, result.requeueAfterMs);
        this.metrics?.reconcileTotal.inc({ controller: this.name, result: "requeue_after" });
      } else {
        this.queue.forget(key);
        this.metrics?.reconcileTotal.inc({ controller: this.name, result: "success" });
      }
    } catch (error) {
      this.queue.addRateLimited(key);
      this.metrics?.reconcileTotal.inc({ controller: this.name, result: "error" });
      this.metrics?.reconcileErrors.inc({ controller: this.name });
      this.log.error(
        {
          key,
          err: error instanceof Error ? error.message : String(error),
          retries: this.queue.numRequeues(key),
        },
        "reconcile failed; will retry",
      );
    } finally {
      this.metrics?.activeWorkers.dec({ controller: this.name });
      this.metrics?.reconcileTime.observe(
        { controller: this.name },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      this.queue.done(key);
      this.reconciled++;
      this.busy--;
      this.onReconciled?.();
    }
  }
}
