// A full, compacting garbage collection once the operator falls idle after
// real work (and once after startup). Catching up with 10,000 tasks leaves
// ~100 MB of garbage (list pages, request bodies, parsed objects) that V8
// keeps while nothing allocates: an idle process never reaches the next GC,
// so its RSS stays at the peak. One collection when the work queue has been
// empty for a moment returns it, at the cost of a pause nobody waits for.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export const IDLE_MS = 2_000;
/** Less work than this leaves too little garbage to be worth a full collection. */
export const MIN_RECONCILES = 50;
export const MIN_INTERVAL_MS = 30_000;

export interface CollectionState {
  /** Nothing has been collected since the operator started: startup's garbage is still there. */
  firstSinceStart: boolean;
  reconcilesSinceLast: number;
  msSinceLast: number;
  idleForMs: number;
}

export function collectionDue(state: CollectionState): boolean {
  return (
    state.idleForMs >= IDLE_MS &&
    // Loading code and listing caches leave garbage like a busy spell does, even with no tasks.
    (state.firstSinceStart || state.reconcilesSinceLast >= MIN_RECONCILES) &&
    state.msSinceLast >= MIN_INTERVAL_MS
  );
}

/**
 * A compacting collection: V8's gc() with the "last-resort" flavor, from a fresh
 * context created after --expose-gc (no flag needed on the command line).
 * A plain gc() frees objects but leaves the old space fragmented, so V8 keeps
 * its pages and RSS stays at the peak (after converging 10,000 tasks: 105 MB of
 * old space holding 40 MB); the last-resort flavor compacts and hands the pages
 * back. Undefined when gc() is not available; the operator then runs without
 * idle collections.
 */
export function compactingGc(): (() => void) | undefined {
  let gc = (globalThis as { gc?: unknown }).gc;
  try {
    if (typeof gc !== "function") {
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc");
    }
  } catch {
    return undefined;
  }
  if (typeof gc !== "function") return undefined;
  const collect = gc as (options: object) => void;
  return () => collect({ type: "major", execution: "sync", flavor: "last-resort" });
}

export class IdleCollector {
  private reconciles = 0;
  private lastAt: number;
  private lastReconcileAt: number;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  collections = 0;

  private readonly isIdle: () => boolean;
  private readonly gc: () => void;
  private readonly now: () => number;

  /** `isIdle`: the work queue is empty and no reconcile is running. */
  constructor(isIdle: () => boolean, gc: () => void, now: () => number = () => performance.now()) {
    this.isIdle = isIdle;
    this.gc = gc;
    this.now = now;
    this.lastAt = now() - MIN_INTERVAL_MS; // the first idle spell may collect at once
    this.lastReconcileAt = now();
  }

  /** The operator started: look once IDLE_MS passes, even if nothing is ever reconciled. */
  started(): void {
    this.arm(IDLE_MS);
  }

  /** A reconcile finished: look again once IDLE_MS passes without another. */
  reconciled(): void {
    this.reconciles++;
    this.lastReconcileAt = this.now();
    this.arm(IDLE_MS);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Looks a little over `ms` from now: timers run on the event loop's cached clock and may fire early. */
  private arm(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), ms + 20);
    this.timer.unref();
  }

  private check(): void {
    if (!this.isIdle()) return; // the reconcile that ends the busy spell arms the timer again
    const now = this.now();
    const state = {
      firstSinceStart: this.collections === 0,
      reconcilesSinceLast: this.reconciles,
      msSinceLast: now - this.lastAt,
      idleForMs: now - this.lastReconcileAt,
    };
    if (collectionDue(state)) {
      this.gc();
      this.collections++;
      this.reconciles = 0;
      this.lastAt = now;
    } else if (state.reconcilesSinceLast >= MIN_RECONCILES) {
      // Too soon after the last collection: look again when the interval has passed.
      this.arm(Math.max(IDLE_MS, MIN_INTERVAL_MS - state.msSinceLast));
    }
  }
}
