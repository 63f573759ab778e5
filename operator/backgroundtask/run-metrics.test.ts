import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import {
  circuitTransition,
  RunMetrics,
  runObservation,
  SCHEDULED_TIMESTAMP_ANNOTATION,
} from "./run-metrics.ts";

const job = (fields: {
  created?: string;
  start?: string;
  scheduled?: string;
}): Parameters<typeof runObservation>[0]["job"] => ({
  metadata: {
    ...(fields.created ? { creationTimestamp: fields.created } : {}),
    annotations: fields.scheduled ? { [SCHEDULED_TIMESTAMP_ANNOTATION]: fields.scheduled } : {},
  },
  status: fields.start ? { startTime: fields.start } : {},
});

describe("what a finished run contributes to the metrics", () => {
  it("measures duration, schedule lag and queue wait of a scheduled run", () => {
    const o = runObservation({
      outcome: "Succeeded",
      finishedAt: "2026-01-01T02:01:30Z",
      job: job({
        scheduled: "2026-01-01T02:00:00Z",
        created: "2026-01-01T02:00:02Z",
        start: "2026-01-01T02:00:05Z",
      }),
    });
    expect(o).toEqual({
      outcome: "Succeeded",
      reason: "Completed",
      durationSeconds: 85,
      scheduleLagSeconds: 5,
      queueWaitSeconds: 3,
    });
  });

  it("has no schedule lag for runs the operator started, and keeps the failure reason", () => {
    const o = runObservation({
      outcome: "Failed",
      reason: "DeadlineExceeded",
      finishedAt: "2026-01-01T02:00:10Z",
      job: job({ created: "2026-01-01T02:00:00Z" }),
    });
    expect(o).toEqual({ outcome: "Failed", reason: "DeadlineExceeded", durationSeconds: 10 });
  });

  it("counts a circuit transition only when the state changes; no circuit is Closed", () => {
    expect(circuitTransition(undefined, { state: "Closed" })).toBeUndefined();
    expect(circuitTransition({ state: "Closed" }, { state: "Open" })).toBe("Open");
    expect(circuitTransition({ state: "Open" }, { state: "HalfOpen" })).toBe("HalfOpen");
    expect(circuitTransition({ state: "HalfOpen" }, undefined)).toBe("Closed");
    expect(circuitTransition({ state: "Open" }, { state: "Open" })).toBeUndefined();
  });
});

describe("RunMetrics", () => {
  it("exposes runs by task and reason, and drops a deleted task's series", async () => {
    const registry = new Registry();
    const metrics = new RunMetrics(registry);
    const run = {
      outcome: "Failed" as const,
      reason: "PodFailurePolicy",
      finishedAt: "2026-01-01T00:00:20Z",
      job: job({ created: "2026-01-01T00:00:00Z", start: "2026-01-01T00:00:00Z" }),
    };
    metrics.observeRunFinished("team", "backup", run);
    metrics.observeRunFinished("team", "backup", run);
    metrics.observeRunFinished("team", "other", { ...run, outcome: "Succeeded" });
    metrics.retryStarted("team", "backup");
    metrics.circuitTransition("team", "backup", "Open");
    const text = await registry.metrics();
    expect(text).toContain(
      'nightshift_runs_total{namespace="team",backgroundtask="backup",outcome="Failed",reason="PodFailurePolicy"} 2',
    );
    expect(text).toContain(
      'nightshift_runs_total{namespace="team",backgroundtask="other",outcome="Succeeded",reason="Completed"} 1',
    );
    expect(text).toContain(
      'nightshift_run_duration_seconds_bucket{le="30",namespace="team",backgroundtask="backup"} 2',
    );
    expect(text).toContain(
      'nightshift_retries_started_total{namespace="team",backgroundtask="backup"} 1',
    );
    expect(text).toContain(
      'nightshift_circuit_transitions_total{namespace="team",backgroundtask="backup",to="Open"} 1',
    );

    metrics.forget("team", "backup");
    const after = await registry.metrics();
    expect(after).not.toContain('backgroundtask="backup"');
    expect(after).toContain('backgroundtask="other"');
  });
});
