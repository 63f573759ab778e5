// Exactly-once run accounting under fire: runs keep finishing (and being
// pruned) while the operator is killed with SIGKILL at random moments and
// restarted. Afterwards every task's counters must equal the ground truth of
// the runs the test created: nothing lost, nothing counted twice.
import { afterAll, describe, expect, it } from "vitest";
import { createNamespace, eventually, kubectl, sleep } from "./support/cluster.ts";
import { OperatorProcess } from "./support/operator.ts";
import { startScheduledRun, startScheduledRuns } from "./support/runs.ts";
import { apply, getJson, task, waitForCondition } from "./support/tasks.ts";

const TASKS = ["alpha", "beta", "gamma"];
const RUNS = 90;

describe("exactly-once run accounting", () => {
  let operator: OperatorProcess | undefined;
  afterAll(async () => {
    await operator?.stop();
  });

  it("loses and double-counts no run while the operator is SIGKILLed at random moments", async () => {
    const ns = await createNamespace("crash");
    operator = await OperatorProcess.start({ namespaces: [ns] });
    for (const name of TASKS) {
      apply(
        task(ns, name, {
          task: "http.request",
          schedule: "0 0 1 1 *",
          successfulRunsHistoryLimit: 2,
          failedRunsHistoryLimit: 2,
          params: { url: "https://example.com" },
        }),
      );
    }
    for (const name of TASKS) await waitForCondition(ns, name, "Ready", "True");

    const truth = Object.fromEntries(TASKS.map((t) => [t, { total: 0, succeeded: 0, failed: 0 }]));
    let creating = true;
    let kills = 0;
    const killer = (async () => {
      while (creating) {
        await sleep(500 + Math.random() * 2500);
        if (!creating) break;
        await operator?.stop("SIGKILL");
        kills++;
        operator = await OperatorProcess.start({ namespaces: [ns] });
      }
    })();
    for (let i = 0; i < RUNS; i++) {
      const name = TASKS[i % TASKS.length] as string;
      const fails = Math.random() < 0.3;
      startScheduledRun(
        ns,
        name,
        `${name}-${i}`,
        fails
          ? { exitCode: 65, duration: `${Math.floor(Math.random() * 1500)}ms` }
          : { duration: `${Math.floor(Math.random() * 1500)}ms` },
      );
      const t = truth[name] as { total: number; succeeded: number; failed: number };
      t.total++;
      if (fails) t.failed++;
      else t.succeeded++;
      await sleep(Math.random() * 400);
    }
    creating = false;
    await killer;

    await eventually(
      () => {
        const runs = TASKS.map(
          (name) =>
            getJson(["bgt", name, "-n", ns])?.status?.runs ?? { total: 0, succeeded: 0, failed: 0 },
        );
        return runs.every((r, i) => r.total >= (truth[TASKS[i] as string]?.total ?? 0))
          ? runs
          : undefined;
      },
      { what: "every run to be recorded", timeoutMs: 120_000 },
    );
    // Once every Job is released (marked recorded), none can be counted again: the counts are final.
    await everyJobReleased(ns);
    const final = TASKS.map((name) => getJson(["bgt", name, "-n", ns])?.status?.runs);
    const countedTotal = final.reduce((sum, r) => sum + (r?.total ?? 0), 0);
    console.log(
      `crash test: runs=${RUNS} kills=${kills} counted=${countedTotal} expected=${RUNS} per task=${JSON.stringify(final)} truth=${JSON.stringify(truth)}`,
    );
    expect(final).toEqual(TASKS.map((name) => truth[name]));
    expect(kills).toBeGreaterThanOrEqual(5);
  }, 300_000);

  it("records a backlog of 320 runs finished while the operator was down exactly once, through 20 SIGKILLs while it catches up", async () => {
    const ns = await createNamespace("backlog");
    await operator?.stop();
    operator = await OperatorProcess.start({ namespaces: [ns] });
    apply(
      task(ns, "backlog", {
        task: "http.request",
        schedule: "0 0 1 1 *",
        successfulRunsHistoryLimit: 3,
        failedRunsHistoryLimit: 3,
        params: { url: "https://example.com" },
      }),
    );
    await waitForCondition(ns, "backlog", "Ready", "True");
    await operator.stop("SIGKILL");
    const truth = { total: 0, succeeded: 0, failed: 0 };
    const runs = Array.from({ length: BACKLOG }, (_, i) => {
      const fails = i % 4 === 1;
      truth.total++;
      if (fails) truth.failed++;
      else truth.succeeded++;
      return { name: `backlog-${i}`, options: fails ? { exitCode: 65 } : {} };
    });
    startScheduledRuns(ns, "backlog", runs);
    await eventually(() => (finishedJobs(ns) >= BACKLOG ? true : undefined), {
      what: `all ${BACKLOG} runs to finish while the operator is down`,
      timeoutMs: 240_000,
    });
    let kills = 0;
    while (kills < 20) {
      operator = await OperatorProcess.start({ namespaces: [ns] });
      await sleep(200 + Math.random() * 1300);
      await operator.stop("SIGKILL");
      kills++;
    }
    operator = await OperatorProcess.start({ namespaces: [ns] });
    await eventually(
      () =>
        (getJson(["bgt", "backlog", "-n", ns])?.status?.runs?.total ?? 0) >= BACKLOG
          ? true
          : undefined,
      { what: "the backlog to be recorded", timeoutMs: 180_000 },
    );
    await everyJobReleased(ns);
    const status = getJson(["bgt", "backlog", "-n", ns])?.status;
    console.log(
      `backlog crash test: runs=${BACKLOG} kills=${kills} counted=${JSON.stringify(status?.runs)} truth=${JSON.stringify(truth)} recordedJobs=${status?.recordedJobs?.length ?? 0}`,
    );
    expect(status?.runs).toEqual(truth);
    expect(status?.recordedJobs?.length ?? 0).toBeLessThanOrEqual(300);
    // History pruned to the task's limits once everything is recorded.
    await eventually(() => (jobNames(ns).length <= 6 ? true : undefined), {
      what: "history pruned to 3 + 3 Jobs",
    });
  }, 600_000);
});

const BACKLOG = 320;

function jobNames(ns: string): string[] {
  return kubectl(["get", "jobs", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}"])
    .split(" ")
    .filter(Boolean);
}

function finishedJobs(ns: string): number {
  return kubectl([
    "get",
    "jobs",
    "-n",
    ns,
    "-o",
    'jsonpath={range .items[*]}{.status.conditions[?(@.status=="True")].type}{"\\n"}{end}',
  ])
    .split("\n")
    .filter((types) => /\b(Complete|Failed)\b/.test(types)).length;
}

async function everyJobReleased(ns: string): Promise<void> {
  await eventually(
    () => {
      const held = kubectl([
        "get",
        "jobs",
        "-n",
        ns,
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}={.metadata.finalizers}{"\\n"}{end}',
      ])
        .split("\n")
        .filter((line) => line.includes("nightshift.dev/run-accounting"));
      return held.length === 0 ? true : undefined;
    },
    { what: "every run Job released", timeoutMs: 120_000 },
  );
}
