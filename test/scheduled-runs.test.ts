// The real CronJob controller's scheduled runs reach the task's status.
import { describe, expect, it } from "vitest";
import { operatorForSuite } from "./support/operator.ts";
import { apply, task, waitForCondition, waitForStatus } from "./support/tasks.ts";

describe("scheduled runs", () => {
  const suite = operatorForSuite("sched");

  it("records a run the CronJob controller started on schedule", async () => {
    const ns = suite.ns;
    apply(task(ns, "every-minute", { task: "reminders.dispatch", schedule: "* * * * *" }));
    await waitForCondition(ns, "every-minute", "Ready", "True");
    const bgt = await waitForStatus(
      ns,
      "every-minute",
      "a scheduled run recorded",
      (s) => (s.runs?.total ?? 0) >= 1,
      100_000,
    );
    // CronJob-created Jobs are named <cronjob>-<minutes since the epoch>.
    expect(bgt.status?.lastRun.jobName).toMatch(/^every-minute-\d{8}$/);
    expect(bgt.status?.lastRun.outcome).toBe("Succeeded");
    expect(Date.parse(bgt.status?.lastScheduleTime)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(bgt.status?.nextScheduleTime)).toBeGreaterThan(
      Date.parse(bgt.status?.lastScheduleTime),
    );
  }, 150_000);
});
