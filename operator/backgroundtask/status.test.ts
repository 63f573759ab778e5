import { describe, expect, it } from "vitest";
import type { BackgroundTaskObject } from "../../crds/backgroundtask.ts";
import { awaitsStatusWrite, taskAfterStatusWrite } from "./status.ts";

describe("taskAfterStatusWrite", () => {
  const task = {
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: { name: "t", namespace: "ns", uid: "u", generation: 2, resourceVersion: "10" },
    spec: { task: "cleanup-temp-files", schedule: "@hourly" },
    status: { observedGeneration: 1, phase: "Pending" },
  } as unknown as BackgroundTaskObject;

  it("takes the metadata from the answer and the status the patch made, and keeps the spec", () => {
    const answer = { ...task.metadata, resourceVersion: "11", labels: { team: "a" } };
    const status = { observedGeneration: 2, phase: "Ready" } as BackgroundTaskObject["status"];
    const written = taskAfterStatusWrite(task, answer, status ?? {});
    expect(written).toEqual({ ...task, metadata: answer, status });
    expect(written.metadata.resourceVersion).toBe("11");
    expect(task.metadata.resourceVersion).toBe("10"); // the cached copy is not touched
  });
});

describe("awaitsStatusWrite", () => {
  it("is true for a new task and for a generation not yet observed, false once observed or while deleted", () => {
    expect(awaitsStatusWrite({ metadata: { generation: 1 } })).toBe(true);
    expect(
      awaitsStatusWrite({ metadata: { generation: 2 }, status: { observedGeneration: 1 } }),
    ).toBe(true);
    expect(
      awaitsStatusWrite({ metadata: { generation: 2 }, status: { observedGeneration: 2 } }),
    ).toBe(false);
    const deleting = { generation: 3, deletionTimestamp: "2026-11-22T12:00:00Z" };
    expect(awaitsStatusWrite({ metadata: deleting, status: { observedGeneration: 2 } })).toBe(
      false,
    );
  });
});
