import { afterEach, describe, expect, it, vi } from "vitest";
import {
  collectionDue,
  compactingGc,
  IDLE_MS,
  IdleCollector,
  MIN_INTERVAL_MS,
  MIN_RECONCILES,
} from "./idle-collection.ts";

describe("collectionDue", () => {
  const due = {
    firstSinceStart: false,
    reconcilesSinceLast: MIN_RECONCILES,
    msSinceLast: MIN_INTERVAL_MS,
    idleForMs: IDLE_MS,
  };
  it("collects once the operator has been idle after enough work", () => {
    expect(collectionDue(due)).toBe(true);
  });
  it("collects startup's garbage at the first idle spell, however little work came before", () => {
    expect(collectionDue({ ...due, firstSinceStart: true, reconcilesSinceLast: 0 })).toBe(true);
    expect(collectionDue({ ...due, firstSinceStart: true, idleForMs: IDLE_MS - 1 })).toBe(false);
  });
  it("waits while work goes on, after too little work, and right after the last collection", () => {
    expect(collectionDue({ ...due, idleForMs: IDLE_MS - 1 })).toBe(false);
    expect(collectionDue({ ...due, reconcilesSinceLast: MIN_RECONCILES - 1 })).toBe(false);
    expect(collectionDue({ ...due, msSinceLast: MIN_INTERVAL_MS - 1 })).toBe(false);
  });
});

describe("compactingGc", () => {
  it("gives a gc() without a command-line flag that hands a fragmented heap's pages back", () => {
    const gc = compactingGc();
    expect(typeof gc).toBe("function");
    // Survivors scattered over every page, as a convergence leaves them: a plain
    // gc() frees the rest but keeps the pages (RSS barely moves).
    const survivors: object[] = [];
    for (let round = 0; round < 40; round++) {
      const batch = Array.from({ length: 20_000 }, (_, i) => ({
        name: `task-${round}-${i}`,
        n: [i],
      }));
      for (let i = 0; i < batch.length; i += 25) survivors.push(batch[i] as object);
    }
    const before = process.memoryUsage.rss();
    gc?.();
    const after = process.memoryUsage.rss();
    expect(survivors).toHaveLength(32_000);
    expect(before - after).toBeGreaterThan(30e6);
  });
});

describe("IdleCollector", () => {
  afterEach(() => vi.useRealTimers());

  it("collects the garbage of startup once the operator is idle, even with nothing to reconcile", () => {
    vi.useFakeTimers();
    const gc = vi.fn();
    const collector = new IdleCollector(
      () => true,
      gc,
      () => Date.now(),
    );
    vi.advanceTimersByTime(MIN_INTERVAL_MS);
    expect(gc).not.toHaveBeenCalled(); // nothing has happened yet
    collector.started();
    vi.advanceTimersByTime(IDLE_MS + 50);
    expect(gc).toHaveBeenCalledTimes(1);
    collector.stop();
  });

  it("collects once after a busy spell ends, and again only after the interval and more work", () => {
    vi.useFakeTimers();
    let idle = false;
    const gc = vi.fn();
    const collector = new IdleCollector(
      () => idle,
      gc,
      () => Date.now(),
    );
    for (let i = 0; i < MIN_RECONCILES; i++) collector.reconciled();
    vi.advanceTimersByTime(IDLE_MS);
    expect(gc).not.toHaveBeenCalled(); // still busy: the queue was not empty
    idle = true;
    collector.reconciled();
    vi.advanceTimersByTime(IDLE_MS + 50);
    expect(gc).toHaveBeenCalledTimes(1);

    for (let i = 0; i < MIN_RECONCILES; i++) collector.reconciled();
    vi.advanceTimersByTime(IDLE_MS + 50);
    expect(gc).toHaveBeenCalledTimes(1); // too soon after the last one
    vi.advanceTimersByTime(MIN_INTERVAL_MS);
    expect(gc).toHaveBeenCalledTimes(2); // looked again once the interval had passed

    // Stopped: reconciles finishing during shutdown arm nothing.
    collector.stop();
    for (let i = 0; i < MIN_RECONCILES; i++) collector.reconciled();
    vi.advanceTimersByTime(MIN_INTERVAL_MS * 2);
    expect(gc).toHaveBeenCalledTimes(2);
  });
});
