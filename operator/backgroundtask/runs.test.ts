import { describe, expect, it } from "vitest";
import { finishedRun, type RunJob } from "./runs.ts";

/** A run Job that started at 12:00:00 and failed at `failedAt` with the Job controller's `reason`. */
function failedJob(reason: string, failedAt: string, activeDeadlineSeconds?: number): RunJob {
  return {
    metadata: { name: "run-1", uid: "u1", creationTimestamp: "2026-11-22T12:00:00Z" },
    ...(activeDeadlineSeconds !== undefined ? { spec: { activeDeadlineSeconds } } : {}),
    status: {
      startTime: "2026-11-22T12:00:00Z",
      conditions: [{ type: "Failed", status: "True", reason, lastTransitionTime: failedAt }],
    },
  };
}

describe("the reason a run failed", () => {
  it("is DeadlineExceeded when the Job controller counted the pod it stopped at the deadline as a failure first", () => {
    const run = finishedRun(failedJob("BackoffLimitExceeded", "2026-11-22T12:01:01Z", 60), []);
    expect(run).toMatchObject({ outcome: "Failed", reason: "DeadlineExceeded" });
  });

  it("stays BackoffLimitExceeded for a pod that failed before the deadline", () => {
    const run = finishedRun(failedJob("BackoffLimitExceeded", "2026-11-22T12:00:59Z", 60), []);
    expect(run).toMatchObject({ outcome: "Failed", reason: "BackoffLimitExceeded" });
  });

  it("stays BackoffLimitExceeded for a Job without a deadline", () => {
    const run = finishedRun(failedJob("BackoffLimitExceeded", "2026-11-22T13:00:00Z"), []);
    expect(run).toMatchObject({ outcome: "Failed", reason: "BackoffLimitExceeded" });
  });

  it("keeps any other reason the Job controller gave", () => {
    const run = finishedRun(failedJob("PodFailurePolicy", "2026-11-22T12:05:00Z", 60), []);
    expect(run).toMatchObject({ outcome: "Failed", reason: "PodFailurePolicy" });
  });
});
