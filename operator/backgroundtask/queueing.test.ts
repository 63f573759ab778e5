import { describe, expect, it } from "vitest";
import { desiredCronJob } from "./desired-cronjob.ts";
import {
  isQueued,
  queuedSince,
  queueWaitSeconds,
  resolvePriority,
  withPriorityCheck,
} from "./queueing.ts";
import type { RunJob } from "./runs.ts";
import { START_GATE } from "./start-rate.ts";
import { type ValidTask, validateTask } from "./validate.ts";

const settings = { priorityClasses: { low: "ns-low", high: "ns-high" } };

describe("priority mapping", () => {
  it("maps a level to both the PriorityClass and, for queued tasks, the WorkloadPriorityClass", () => {
    expect(resolvePriority({ priority: "high", queueName: "batch" }, settings)).toEqual({
      priorityClassName: "ns-high",
      workloadPriorityClass: "ns-high",
    });
    expect(resolvePriority({ priority: "high" }, settings)).toEqual({
      priorityClassName: "ns-high",
    });
    expect(
      resolvePriority(
        { priority: "low", queueName: "batch" },
        { ...settings, workloadPriorityClasses: { low: "wl-low" } },
      ),
    ).toEqual({ priorityClassName: "ns-low", workloadPriorityClass: "wl-low" });
  });

  it("lets normal stay unmapped (the cluster default) but no other level", () => {
    expect(resolvePriority({ priority: "normal", queueName: "batch" }, settings)).toEqual({});
    expect(resolvePriority({ priority: "critical" }, settings)).toEqual({
      unmapped:
        '"critical" maps to no PriorityClass (operator setting --priority-classes maps low, high)',
    });
    expect(
      resolvePriority(
        { priority: "high", queueName: "batch" },
        { ...settings, workloadPriorityClasses: { low: "wl-low" } },
      ),
    ).toMatchObject({ unmapped: expect.stringContaining("WorkloadPriorityClass") });
  });

  it("turns an unmapped priority into SpecValid=False naming spec.priority", () => {
    const valid = {
      valid: true,
      spec: { priority: "critical" },
      references: ["Secret/db"],
    } as unknown as ValidTask;
    expect(withPriorityCheck(valid, settings)).toMatchObject({
      valid: false,
      reason: "UnmappedPriority",
      field: "spec.priority",
      message: expect.stringMatching(/^spec\.priority: "critical" maps to no PriorityClass/),
      references: ["Secret/db"],
    });
    const fine = { ...valid, spec: { priority: "low" } } as unknown as ValidTask;
    expect(withPriorityCheck(fine, settings)).toBe(fine);
  });
});

const job = (status: RunJob["status"]): RunJob => ({
  metadata: { name: "j", uid: "u", creationTimestamp: "2026-01-01T00:00:00Z" },
  status,
});

describe("queued runs", () => {
  it("is queued while suspended without a start, and waited until its admission", () => {
    const waiting = job({
      conditions: [
        { type: "Suspended", status: "True", lastTransitionTime: "2026-01-01T00:00:01Z" },
      ],
    });
    expect(isQueued(waiting)).toBe(true);
    expect(queuedSince(waiting)).toBe("2026-01-01T00:00:01Z");
    expect(queueWaitSeconds(waiting)).toBeUndefined();
    const admitted = job({
      startTime: "2026-01-01T00:00:42Z",
      conditions: [{ type: "Suspended", status: "False", reason: "JobResumed" }],
    });
    expect(isQueued(admitted)).toBe(false);
    expect(queueWaitSeconds(admitted)).toBe(42);
  });

  it("is neither queued nor waited for a run that never was suspended", () => {
    const plain = job({ startTime: "2026-01-01T00:00:01Z" });
    expect(isQueued(plain)).toBe(false);
    expect(queueWaitSeconds(plain)).toBeUndefined();
  });
});

describe("a queued task's CronJob", () => {
  const task = {
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: { name: "nightly", namespace: "team-a", uid: "uid-1" },
    spec: {
      task: "http.request",
      schedule: "0 2 * * *",
      params: { url: "https://example.com" },
      priority: "high" as const,
      queueName: "batch",
    },
  };
  const base = {
    runnerImage: "runner:test",
    runnerImagePullPolicy: "IfNotPresent" as const,
    priorityClasses: { high: "nightshift-high" },
  };

  it("creates runs suspended for Kueue, with the queue and both priority classes", () => {
    const validation = validateTask(task, { exists: () => true, imageAllowed: () => true });
    if (!validation.valid) throw new Error(validation.message);
    const cronJob = desiredCronJob(task, validation, base);
    const jobTemplate = cronJob.spec.jobTemplate as {
      metadata: { labels: Record<string, string> };
      spec: { suspend?: boolean; template: { spec: Record<string, unknown> } };
    };
    expect(jobTemplate.spec.suspend).toBe(true);
    expect(jobTemplate.metadata.labels).toMatchObject({
      "kueue.x-k8s.io/queue-name": "batch",
      "kueue.x-k8s.io/priority-class": "nightshift-high",
    });
    expect(jobTemplate.spec.template.spec.priorityClassName).toBe("nightshift-high");
    expect(jobTemplate.spec.template.spec.schedulingGates).toBeUndefined();
  });

  it("gates run pods when a start rate is set", () => {
    const validation = validateTask(task, { exists: () => true, imageAllowed: () => true });
    if (!validation.valid) throw new Error(validation.message);
    const cronJob = desiredCronJob(task, validation, { ...base, startRate: 5 });
    const podSpec = (
      cronJob.spec.jobTemplate.spec as { template: { spec: Record<string, unknown> } }
    ).template.spec;
    expect(podSpec.schedulingGates).toEqual([{ name: START_GATE }]);
  });
});
