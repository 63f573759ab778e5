// A rate-limited work queue with client-go's semantics: a key waits in the
// queue at most once (dirty set), is never handed to two workers at once
// (processing set; re-adds while processing are deferred until done), and
// failures back off per key exponentially, capped, under a global token bucket.
import type { QueueMetrics } from "./metrics.ts";

export interface RateLimiterOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Global token bucket: sustained rate and burst of rate-limited re-adds. */
  qps: number;
  burst: number;
}

const DEFAULT_LIMITS: RateLimiterOptions = {
  baseDelayMs: 5,
  maxDelayMs: 1000_000,
  qps: 10,
  burst: 100,
};

export class WorkQueue {
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Map<string, number>();
  private readonly addedAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private tokens: number;
  private lastRefill = Date.now();
  private shuttingDown = false;

  readonly name: string;
  private readonly metrics?: QueueMetrics;
  private readonly limits: RateLimiterOptions;

  constructor(name: string, metrics?: QueueMetrics, limits: RateLimiterOptions = DEFAULT_LIMITS) {
    this.name = name;
    this.metrics = metrics;
    this.limits = limits;
    this.tokens = limits.burst;
  }

  get length(): number {
    return this.queue.length - this.head;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.adds.inc({ name: this.name });
    this.dirty.add(key);
    this.addedAt.set(key, Date.now());
    if (this.processing.has(key)) return; // re-queued when the worker calls done()
    this.push(key);
  }

  /** Adds the key after a delay; an earlier pending delay for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /** Re-adds a failed key after its per-key backoff or the global bucket's wait, whichever is longer. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.metrics?.retries.inc({ name: this.name });
    const perItem = Math.min(this.limits.maxDelayMs, this.limits.baseDelayMs * 2 ** n);
    this.addAfter(key, Math.max(perItem, this.bucketDelay()));
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to work on, or undefined once shut down: keys still queued then are left for the next leader. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    if (this.length > 0) return Promise.resolve(this.take());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    const started = this.processing.get(key);
    this.processing.delete(key);
    if (started !== undefined)
      this.metrics?.workDuration.observe({ name: this.name }, (Date.now() - started) / 1000);
    if (this.dirty.has(key)) this.push(key);
    this.updateDepth();
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const resolve of this.waiters.splice(0)) resolve(undefined);
  }

  /** Seconds the longest-running key has been processing (metric). */
  longestRunningSeconds(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const started of this.processing.values()) oldest = Math.min(oldest, started);
    return oldest === Number.POSITIVE_INFINITY ? 0 : (Date.now() - oldest) / 1000;
  }

  unfinishedWorkSeconds(): number {
    const now = Date.now();
    let total = 0;
    for (const started of this.processing.values()) total += (now - started) / 1000;
    return total;
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(this.startProcessing(key));
      return;
    }
    this.queue.push(key);
    this.updateDepth();
  }

  private take(): string {
    const key = this.queue[this.head] as string;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    return this.startProcessing(key);
  }

  private startProcessing(key: string): string {
    this.dirty.delete(key);
    this.processing.set(key, Date.now());
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined)
      this.metrics?.queueDuration.observe({ name: this.name }, (Date.now() - added) / 1000);
    this.updateDepth();
    return key;
  }

  private bucketDelay(): number {
    const now = Date.now();
    this.tokens = Math.min(
      this.limits.burst,
      this.tokens + ((now - this.lastRefill) / 1000) * this.limits.qps,
    );
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.limits.qps) * 1000;
  }

  private updateDepth(): void {
    this.metrics?.depth.set({ name: this.name }, this.length);
  }
}
