// Load-aware starts, decided purely: which waiting runs may start now under a
// cluster-wide start rate (a token bucket), most important first.
//
// Many tasks due at the same instant (beyond what H spreads) would otherwise
// start together. With --start-rate, every run pod is created with the
// scheduling gate START_GATE; the operator removes the gate from at most
// `burst` pods at once and then `rate` per second, so starts spread out.
// Higher pod priority goes first, then the longest waiting, then by name, so
// the order is stable and nothing waits forever (the queue drains at `rate`).
import { compareText } from "../runtime/order.ts";

export const START_GATE = "nightshift.dev/start-rate";

export interface StartRate {
  /** Starts per second. */
  rate: number;
  /** Starts allowed at once after a quiet period. */
  burst: number;
}

export interface StartBucket {
  tokens: number;
  atMs: number;
}

export interface WaitingStart {
  /** namespace/name of the gated pod. */
  key: string;
  /** Pod priority (from its PriorityClass); 0 when none. */
  priority: number;
  /** When it started waiting (pod creation). */
  sinceMs: number;
}

export interface StartPlan {
  release: WaitingStart[];
  bucket: StartBucket;
  /** When to look again because runs still wait; undefined when none do. */
  retryInMs?: number;
}

/** The bucket at `nowMs`: refilled at `rate`, capped at `burst`; full when new. */
export function refill(
  bucket: StartBucket | undefined,
  nowMs: number,
  limit: StartRate,
): StartBucket {
  if (!bucket) return { tokens: limit.burst, atMs: nowMs };
  const elapsed = Math.max(0, nowMs - bucket.atMs) / 1000;
  return { tokens: Math.min(limit.burst, bucket.tokens + elapsed * limit.rate), atMs: nowMs };
}

export function byStartOrder(a: WaitingStart, b: WaitingStart): number {
  return b.priority - a.priority || a.sinceMs - b.sinceMs || compareText(a.key, b.key);
}

export function planStarts(
  waiting: WaitingStart[],
  bucket: StartBucket | undefined,
  nowMs: number,
  limit: StartRate,
): StartPlan {
  const current = refill(bucket, nowMs, limit);
  const count = Math.min(waiting.length, Math.floor(current.tokens));
  const release = [...waiting].sort(byStartOrder).slice(0, count);
  const next: StartBucket = { tokens: current.tokens - count, atMs: nowMs };
  if (waiting.length === count) return { release, bucket: next };
  const missing = 1 - (next.tokens % 1);
  return {
    release,
    bucket: next,
    retryInMs: Math.max(1, Math.ceil((missing / limit.rate) * 1000)),
  };
}
