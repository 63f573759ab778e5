// Run accounting, retries, circuit breaker and run-now, end to end: runs are
// real Jobs whose pods kwok drives to the exit codes a runner would return.
import { describe, expect, it } from "vitest";
import { createNamespace, eventually, kubectl } from "./support/cluster.ts";
import { OperatorProcess, operatorForSuite } from "./support/operator.ts";
import { kwokPodBehaviour, startScheduledRun } from "./support/runs.ts";
import {
  condition,
  getJson,
  jobsOf,
  patchSpec,
  podsOfJob,
  readyTask,
  waitForCondition,
  waitForStatus,
  warningEvents,
} from "./support/tasks.ts";

describe("run accounting", () => {
  const suite = operatorForSuite("runs");

  it("records successful and failed runs in every status field, with events", async () => {
    await readyTask(suite.ns, "hook");

    startScheduledRun(suite.ns, "hook", "hook-1", {
      duration: "3s",
      result: '{"status":200,"durationMs":41}',
    });
    const running = await waitForStatus(
      suite.ns,
      "hook",
      "run active",
      (s) => s.active?.[0]?.name === "hook-1",
    );
    expect(running.status?.phase).toBe("Running");
    const job = getJson(["job", "hook-1", "-n", suite.ns]);
    expect(job?.metadata.finalizers).toContain("nightshift.dev/run-accounting");

    let bgt = await waitForStatus(
      suite.ns,
      "hook",
      "first run recorded",
      (s) => s.runs?.total === 1,
    );
    expect(bgt.status?.runs).toEqual({ total: 1, succeeded: 1, failed: 0 });
    expect(bgt.status?.consecutiveFailures).toBe(0);
    expect(bgt.status?.active).toBeUndefined();
    expect(bgt.status?.phase).toBe("Ready");
    expect(bgt.status?.lastRun).toMatchObject({
      jobName: "hook-1",
      outcome: "Succeeded",
      exitCode: 0,
      message: '{"status":200,"durationMs":41}',
    });
    expect(bgt.status?.lastRun.durationSeconds).toBeGreaterThanOrEqual(2);
    expect(Date.parse(bgt.status?.lastRun.completionTime)).toBeGreaterThan(
      Date.parse(bgt.status?.lastRun.startTime),
    );
    expect(bgt.status?.lastSuccessTime).toBe(bgt.status?.lastRun.completionTime);
    const recordedJob = await eventually(() => {
      const j = getJson(["job", "hook-1", "-n", suite.ns]);
      return j?.metadata.annotations?.["nightshift.dev/recorded"] === "true" ? j : undefined;
    });
    expect(recordedJob.metadata.finalizers ?? []).not.toContain("nightshift.dev/run-accounting");

    startScheduledRun(suite.ns, "hook", "hook-2", { exitCode: 65 });
    bgt = await waitForStatus(suite.ns, "hook", "failed run recorded", (s) => s.runs?.total === 2);
    expect(bgt.status?.runs).toEqual({ total: 2, succeeded: 1, failed: 1 });
    expect(bgt.status?.consecutiveFailures).toBe(1);
    expect(bgt.status?.phase).toBe("Failing");
    expect(bgt.status?.lastRun).toMatchObject({
      jobName: "hook-2",
      outcome: "Failed",
      exitCode: 65,
      reason: "PodFailurePolicy",
      message: '{"error":"exit 65"}',
    });
    expect(bgt.status?.lastFailureTime).toBe(bgt.status?.lastRun.completionTime);
    const failed = await eventually(() => {
      const items = warningEvents(suite.ns, "hook", "RunFailed");
      return items.length ? items : undefined;
    });
    expect(failed[0]?.message).toContain("hook-2 failed with exit code 65");

    startScheduledRun(suite.ns, "hook", "hook-3");
    bgt = await waitForStatus(suite.ns, "hook", "recovery recorded", (s) => s.runs?.total === 3);
    expect(bgt.status?.consecutiveFailures).toBe(0);
    expect(bgt.status?.phase).toBe("Ready");
    await eventually(
      () => (warningEvents(suite.ns, "hook", "Recovered").length ? true : undefined),
      {
        what: "Recovered event",
      },
    );
    expect(kubectl(["get", "bgt", "hook", "-n", suite.ns, "-o", "wide"])).toMatch(
      /hook\s+http\.request/,
    );
  });

  it("retries exit code 75 inside the run (backoffLimit) but fails 78 at once", async () => {
    await readyTask(suite.ns, "retrying", {
      retry: { limit: 2 },
    });
    startScheduledRun(suite.ns, "retrying", "retrying-75", { exitCode: 75 });
    let bgt = await waitForStatus(
      suite.ns,
      "retrying",
      "75 recorded",
      (s) => s.runs?.total === 1,
      60_000,
    );
    expect(bgt.status?.lastRun).toMatchObject({
      outcome: "Failed",
      exitCode: 75,
      reason: "BackoffLimitExceeded",
    });
    const pods75 = podsOfJob(suite.ns, "retrying-75");
    expect(pods75.length).toBe(3);

    startScheduledRun(suite.ns, "retrying", "retrying-78", { exitCode: 78 });
    bgt = await waitForStatus(suite.ns, "retrying", "78 recorded", (s) => s.runs?.total === 2);
    expect(bgt.status?.lastRun).toMatchObject({
      outcome: "Failed",
      exitCode: 78,
      reason: "PodFailurePolicy",
    });
    const pods78 = podsOfJob(suite.ns, "retrying-78");
    expect(pods78.length).toBe(1);
  });

  it("starts delayed retry runs with exponential backoff, then gives up", async () => {
    const failing = kwokPodBehaviour({ exitCode: 75 });
    await readyTask(suite.ns, "flaky", {
      retry: {
        limit: 0,
        backoff: { initialDelay: "2s", factor: 2, maxDelay: "1m", maxRetries: 2 },
      },
      podMetadata: failing,
    });
    kubectl(["annotate", "bgt", "flaky", "-n", suite.ns, "nightshift.dev/run-now=first"]);
    const bgt = await waitForStatus(
      suite.ns,
      "flaky",
      "manual run and two retries recorded",
      (s) => s.runs?.total === 3 && !s.retry,
      60_000,
    );
    expect(bgt.status?.runs).toEqual({ total: 3, succeeded: 0, failed: 3 });
    const jobs = jobsOf(suite.ns, "flaky").sort((a, b) =>
      a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp),
    );
    expect(jobs.map((j) => j.metadata.annotations["nightshift.dev/run-kind"])).toEqual([
      "manual",
      "retry",
      "retry",
    ]);
    const finished = (j: (typeof jobs)[number]) =>
      Date.parse(
        j.status?.conditions?.find((c: { type: string }) => c.type === "Failed")
          ?.lastTransitionTime,
      );
    const created = (j: (typeof jobs)[number]) => Date.parse(j.metadata.creationTimestamp);
    const [manual, retry1, retry2] = jobs as [
      (typeof jobs)[number],
      (typeof jobs)[number],
      (typeof jobs)[number],
    ];
    const firstWait = created(retry1) - finished(manual);
    const secondWait = created(retry2) - finished(retry1);
    // 2 s then 4 s, each ±20 % jitter, timestamps to the second.
    expect(firstWait).toBeGreaterThanOrEqual(1000);
    expect(secondWait).toBeGreaterThanOrEqual(2000);
    expect(secondWait).toBeGreaterThan(firstWait);
    // The status that recorded the third failure also decided "no more retries" (no status.retry).
    expect(jobsOf(suite.ns, "flaky").length).toBe(3);
  });

  it("starts exactly one run per run-now value, also across an operator restart", async () => {
    await readyTask(suite.ns, "manual");
    kubectl(["annotate", "bgt", "manual", "-n", suite.ns, "nightshift.dev/run-now=1700000000"]);
    await waitForStatus(
      suite.ns,
      "manual",
      "one run",
      (s) => s.runs?.total === 1 && s.lastRunNowValue === "1700000000",
    );
    kubectl([
      "annotate",
      "--overwrite",
      "bgt",
      "manual",
      "-n",
      suite.ns,
      "nightshift.dev/run-now=1700000000",
      "unrelated=change",
    ]);
    await suite.restart();
    await suite.operator.idle(); // the restarted operator has looked at every task
    expect(jobsOf(suite.ns, "manual").length).toBe(1);
    kubectl([
      "annotate",
      "--overwrite",
      "bgt",
      "manual",
      "-n",
      suite.ns,
      "nightshift.dev/run-now=1700000001",
    ]);
    const bgt = await waitForStatus(suite.ns, "manual", "second run", (s) => s.runs?.total === 2);
    expect(bgt.status?.lastRunNowValue).toBe("1700000001");
    expect(jobsOf(suite.ns, "manual").length).toBe(2);
    expect(
      kubectl([
        "get",
        "events",
        "-n",
        suite.ns,
        "--field-selector",
        "involvedObject.name=manual,reason=RunStarted",
      ]),
    ).toContain("manual run");
  });

  it("prunes recorded runs beyond the history limits, keeping the newest", async () => {
    await readyTask(suite.ns, "pruned", {
      successfulRunsHistoryLimit: 2,
      failedRunsHistoryLimit: 1,
    });
    for (let i = 1; i <= 5; i++) startScheduledRun(suite.ns, "pruned", `pruned-${i}`);
    startScheduledRun(suite.ns, "pruned", "pruned-f1", { exitCode: 1 });
    startScheduledRun(suite.ns, "pruned", "pruned-f2", { exitCode: 1, duration: "1s" });
    await waitForStatus(suite.ns, "pruned", "all recorded", (s) => s.runs?.total === 7);
    const names = await eventually(
      () => {
        const n = jobsOf(suite.ns, "pruned")
          .filter((j) => !j.metadata.deletionTimestamp)
          .map((j) => j.metadata.name)
          .sort();
        return n.length === 3 ? n : undefined;
      },
      { what: "history pruned to 2 successful + 1 failed" },
    );
    expect(names).toContain("pruned-f2");
    expect(names.filter((n) => !n.includes("-f")).length).toBe(2);
  });

  it("counts every run that finished while the operator was down", async () => {
    await readyTask(suite.ns, "downtime", {
      successfulRunsHistoryLimit: 1,
      failedRunsHistoryLimit: 1,
    });
    await suite.operator.stop();
    for (let i = 0; i < 6; i++)
      startScheduledRun(suite.ns, "downtime", `downtime-${i}`, i % 3 === 0 ? { exitCode: 65 } : {});
    await eventually(
      () => {
        const jobs = jobsOf(suite.ns, "downtime");
        return jobs.length === 6 &&
          jobs.every((j) =>
            j.status?.conditions?.some((c: { status: string }) => c.status === "True"),
          )
          ? true
          : undefined;
      },
      { what: "runs to finish while the operator is down" },
    );
    suite.operator = await OperatorProcess.start({ namespaces: [suite.ns] });
    const bgt = await waitForStatus(
      suite.ns,
      "downtime",
      "downtime runs recorded",
      (s) => s.runs?.total === 6,
    );
    expect(bgt.status?.runs).toEqual({ total: 6, succeeded: 4, failed: 2 });
    await eventually(
      () =>
        jobsOf(suite.ns, "downtime").filter((j) => !j.metadata.deletionTimestamp).length === 2
          ? true
          : undefined,
      { what: "pruned after recording" },
    );
  });
});

describe("circuit breaker", () => {
  const suite = operatorForSuite("circuit");

  it("opens after N consecutive failures, suspends the CronJob, half-opens after the cooldown, closes on success", async () => {
    const failing = kwokPodBehaviour({ exitCode: 75 });
    await readyTask(suite.ns, "breaker", {
      schedule: "@hourly",
      circuitBreaker: { failureThreshold: 2, cooldown: "3s", maxCooldown: "1m" },
      podMetadata: failing,
    });
    startScheduledRun(suite.ns, "breaker", "breaker-1");
    await waitForStatus(suite.ns, "breaker", "first failure", (s) => s.consecutiveFailures === 1);
    expect(getJson(["cronjob", "breaker", "-n", suite.ns])?.spec.suspend).toBe(false);
    startScheduledRun(suite.ns, "breaker", "breaker-2");
    let bgt = await waitForCondition(
      suite.ns,
      "breaker",
      "CircuitOpen",
      "True",
      "ConsecutiveFailures",
    );
    expect(bgt.status?.phase).toBe("CircuitOpen");
    expect(bgt.status?.circuit).toMatchObject({ state: "Open", cooldownSeconds: 3 });
    expect(bgt.status?.nextScheduleTime).toBeUndefined();
    expect(getJson(["cronjob", "breaker", "-n", suite.ns])?.spec.suspend).toBe(true);
    await eventually(
      () => (warningEvents(suite.ns, "breaker", "CircuitOpened").length ? true : undefined),
      { what: "CircuitOpened event" },
    );

    // The trial (still failing) re-opens the circuit with the cooldown doubled.
    bgt = await waitForStatus(
      suite.ns,
      "breaker",
      "trial failed, cooldown doubled",
      (s) => s.circuit?.state === "Open" && s.circuit?.cooldownSeconds === 6 && s.runs?.total === 3,
    );
    const trial = jobsOf(suite.ns, "breaker").find(
      (j) => j.metadata.annotations["nightshift.dev/run-kind"] === "trial",
    );
    expect(trial).toBeDefined();

    // Fix the task: the next trial succeeds, the circuit closes and the schedule resumes.
    kubectl([
      "patch",
      "bgt",
      "breaker",
      "-n",
      suite.ns,
      "--type=json",
      "-p",
      JSON.stringify([{ op: "remove", path: "/spec/podMetadata" }]),
    ]);
    bgt = await waitForStatus(
      suite.ns,
      "breaker",
      "circuit closed",
      (s) => s.circuit?.state === "Closed",
      30_000,
    );
    expect(bgt.status?.consecutiveFailures).toBe(0);
    expect(condition(bgt, "CircuitOpen")).toMatchObject({ status: "False", reason: "Closed" });
    expect(getJson(["cronjob", "breaker", "-n", suite.ns])?.spec.suspend).toBe(false);
    expect(bgt.status?.nextScheduleTime).toBeDefined();
  });

  it("lets spec.suspend win over the breaker and closes at once on the reset annotation", async () => {
    await readyTask(suite.ns, "held", {
      schedule: "@hourly",
      circuitBreaker: { failureThreshold: 1, cooldown: "2s" },
      podMetadata: kwokPodBehaviour({ exitCode: 75 }),
    });
    patchSpec(suite.ns, "held", { suspend: true });
    await waitForCondition(suite.ns, "held", "Suspended", "True");
    startScheduledRun(suite.ns, "held", "held-1");
    const open = await waitForCondition(suite.ns, "held", "CircuitOpen", "True");
    // Past the cooldown, a run-now is answered (consumed, nothing started): proof the operator
    // looked after the trial was due, and that suspend wins over run-now too.
    const due = Date.parse(open.status?.circuit?.openedAt ?? "") + 2000;
    await eventually(() => (Date.now() > due + 500 ? true : undefined), { what: "cooldown over" });
    kubectl(["annotate", "bgt", "held", "-n", suite.ns, "nightshift.dev/run-now=while-held"]);
    await waitForStatus(
      suite.ns,
      "held",
      "run-now consumed",
      (s) => s.lastRunNowValue === "while-held",
    );
    expect(jobsOf(suite.ns, "held").length).toBe(1); // no trial, no run-now while the user suspends the task
    kubectl(["annotate", "bgt", "held", "-n", suite.ns, "nightshift.dev/reset-circuit=now"]);
    const bgt = await waitForCondition(suite.ns, "held", "CircuitOpen", "False");
    expect(bgt.status?.consecutiveFailures).toBe(0);
    expect(getJson(["cronjob", "held", "-n", suite.ns])?.spec.suspend).toBe(true); // still the user's suspend
    patchSpec(suite.ns, "held", { suspend: false });
    await eventually(() =>
      getJson(["cronjob", "held", "-n", suite.ns])?.spec.suspend === false ? true : undefined,
    );
  });

  it("uses run-now as the half-open trial while the circuit is open", async () => {
    await readyTask(suite.ns, "trial-now", {
      schedule: "@hourly",
      circuitBreaker: { failureThreshold: 1, cooldown: "1h" },
    });
    startScheduledRun(suite.ns, "trial-now", "trial-now-1", { exitCode: 75 });
    await waitForCondition(suite.ns, "trial-now", "CircuitOpen", "True");
    kubectl(["annotate", "bgt", "trial-now", "-n", suite.ns, "nightshift.dev/run-now=try"]);
    const bgt = await waitForStatus(
      suite.ns,
      "trial-now",
      "closed by the manual trial",
      (s) => s.circuit?.state === "Closed" && s.runs?.total === 2,
    );
    expect(bgt.status?.lastRun.outcome).toBe("Succeeded");
  });
});

describe("several watched namespaces", () => {
  it("reconciles tasks and records runs in each namespace one operator watches", async () => {
    const namespaces = [await createNamespace("multi-a"), await createNamespace("multi-b")];
    const operator = await OperatorProcess.start({ namespaces });
    try {
      for (const ns of namespaces) {
        await readyTask(ns, "hook");
        startScheduledRun(ns, "hook", "hook-1");
      }
      for (const ns of namespaces) {
        await waitForStatus(ns, "hook", "run recorded", (s) => s.runs?.total === 1);
      }
    } finally {
      await operator.stop();
    }
  });
});
