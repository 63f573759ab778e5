import { describe, expect, it } from "vitest";
import { decideDeferral } from "./deferral.ts";

const policy = { saturatedAt: 10, levels: ["low" as const], maxDeferralMs: 30 * 60_000 };
const now = new Date("2026-01-01T10:00:00Z");

describe("deferring low-priority runs while their queue is saturated", () => {
  it("defers a low-priority queued task once its queue is saturated", () => {
    const d = decideDeferral({
      priority: "low",
      queueName: "batch",
      load: { pending: 10 },
      now,
      policy,
    });
    expect(d).toEqual({
      deferred: true,
      since: "2026-01-01T10:00:00Z",
      message: expect.stringContaining("queue batch is saturated (10 or more pending workloads)"),
      reviewInMs: 30 * 60_000,
    });
  });

  it("never defers other levels, unqueued tasks, unknown queues, or with the policy off", () => {
    const load = { pending: 100 };
    expect(
      decideDeferral({ priority: "high", queueName: "batch", load, now, policy }).deferred,
    ).toBe(false);
    expect(decideDeferral({ priority: "low", load, now, policy }).deferred).toBe(false);
    expect(decideDeferral({ priority: "low", queueName: "batch", now, policy }).deferred).toBe(
      false,
    );
    expect(
      decideDeferral({
        priority: "low",
        queueName: "batch",
        load,
        now,
        policy: { ...policy, saturatedAt: 0 },
      }).deferred,
    ).toBe(false);
  });

  it("keeps deferring until the queue drains below half the threshold (no flapping)", () => {
    const deferredSince = "2026-01-01T09:50:00Z";
    const still = decideDeferral({
      priority: "low",
      queueName: "batch",
      load: { pending: 5 },
      deferredSince,
      now,
      policy,
    });
    expect(still).toMatchObject({ deferred: true, since: deferredSince, reviewInMs: 20 * 60_000 });
    expect(
      decideDeferral({
        priority: "low",
        queueName: "batch",
        load: { pending: 4 },
        deferredSince,
        now,
        policy,
      }),
    ).toEqual({ deferred: false });
    expect(
      decideDeferral({ priority: "low", queueName: "batch", load: { pending: 9 }, now, policy })
        .deferred,
    ).toBe(false);
  });

  it("is bounded: after the longest deferral the run goes to the queue anyway", () => {
    const d = decideDeferral({
      priority: "low",
      queueName: "batch",
      load: { pending: 50 },
      deferredSince: "2026-01-01T09:30:00Z",
      now,
      policy,
    });
    expect(d).toEqual({
      deferred: false,
      reason: "MaxDeferralReached",
      since: "2026-01-01T09:30:00Z",
    });
    // ...until the queue drains, which ends the episode.
    expect(
      decideDeferral({
        priority: "low",
        queueName: "batch",
        load: { pending: 2 },
        deferredSince: "2026-01-01T09:30:00Z",
        now,
        policy,
      }),
    ).toEqual({ deferred: false });
  });
});
