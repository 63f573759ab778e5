import { describe, expect, it } from "vitest";
import { planStarts, type StartBucket, type WaitingStart } from "./start-rate.ts";

const limit = { rate: 10, burst: 5 };
const waiting = (n: number, priority = 0): WaitingStart[] =>
  Array.from({ length: n }, (_, i) => ({
    key: `ns/run-${String(i).padStart(3, "0")}`,
    priority,
    sinceMs: 0,
  }));

/** Releases every run the way the shell does: plan, wait as told, plan again. */
function drain(runs: WaitingStart[], rate = limit) {
  const startedAt = new Map<string, number>();
  let bucket: StartBucket | undefined;
  let now = 0;
  let left = runs;
  for (let rounds = 0; left.length && rounds < 10_000; rounds++) {
    const plan = planStarts(left, bucket, now, rate);
    for (const r of plan.release) startedAt.set(r.key, now);
    bucket = plan.bucket;
    left = left.filter((r) => !startedAt.has(r.key));
    now += plan.retryInMs ?? 0;
  }
  return startedAt;
}

describe("cluster-wide start rate", () => {
  it("starts a burst at once, then spreads the rest at the rate", () => {
    const starts = [...drain(waiting(200)).values()];
    expect(starts.filter((t) => t === 0)).toHaveLength(5);
    // 195 more at 10/s: the last one 19.5 s after the first.
    expect(Math.max(...starts)).toBe(19_500);
    // Never more than burst + rate × window in any window.
    for (let from = 0; from <= 19_500; from += 500) {
      const inSecond = starts.filter((t) => t >= from && t < from + 1000).length;
      expect(inSecond).toBeLessThanOrEqual(limit.burst + limit.rate);
    }
  });

  it("starts the highest priority first, then the longest waiting", () => {
    const runs: WaitingStart[] = [
      { key: "a/low-old", priority: 0, sinceMs: 0 },
      { key: "a/high-new", priority: 1000, sinceMs: 50 },
      { key: "a/high-old", priority: 1000, sinceMs: 10 },
      { key: "a/low-new", priority: 0, sinceMs: 20 },
    ];
    const plan = planStarts(runs, { tokens: 3, atMs: 0 }, 0, limit);
    expect(plan.release.map((r) => r.key)).toEqual(["a/high-old", "a/high-new", "a/low-old"]);
    expect(plan.retryInMs).toBe(100);
  });

  it("refills with time but never beyond the burst, and says nothing when no run waits", () => {
    const idle = planStarts([], { tokens: 0, atMs: 0 }, 60_000, limit);
    expect(idle).toEqual({ release: [], bucket: { tokens: 5, atMs: 60_000 } });
    const partial = planStarts(waiting(3), { tokens: 0, atMs: 0 }, 150, limit);
    expect(partial.release).toHaveLength(1);
    expect(partial.retryInMs).toBe(50);
  });
});
