// Exactly-once run accounting, tried over many generated histories: an
// in-process model of the apiserver semantics the protocol relies on
// (resourceVersion-guarded status writes, RFC 7386 merge patches, finalizers
// holding deleted Jobs, strategic-merge finalizer edits, AlreadyExists on
// create), caches that lag behind the server, crashes between any two actions,
// operator outages with backlogs of up to 5,000 finished runs, and history
// pruning. This model checks the planner's logic; the real control plane
// checks the rest (test/crash.test.ts).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BackgroundTaskObject, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { desiredCronJob } from "./desired-cronjob.ts";
import {
  RECORDED_ANNOTATION,
  RUN_FINALIZER,
  RUN_KIND_ANNOTATION,
  TASK_UID_ANNOTATION,
} from "./labels.ts";
import { type Action, plan } from "./plan.ts";
import type { RunJob, RunPod } from "./runs.ts";
import { applyMergePatch } from "./testing/merge-patch.ts";
import { validateTask } from "./validate.ts";

const TASK_UID = "task-uid-1";
const settings = {
  runnerImage: "runner:1",
  runnerImagePullPolicy: "IfNotPresent",
  priorityClasses: {},
} as never;

interface ModelJob extends RunJob {
  outcome?: "Succeeded" | "Failed";
}

const clone = <T>(v: T): T => structuredClone(v);
/** As the apiserver stores it: undefined members dropped. */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v ?? {}));

class ModelCluster {
  now = Date.parse("2026-01-01T00:00:00Z");
  private rv = 1;
  private uidSeq = 0;
  task: BackgroundTaskObject;
  jobs = new Map<string, ModelJob>();
  /** Ground truth: every run that finished, by Job UID. */
  truth = new Map<string, "Succeeded" | "Failed">();
  taskHistory: BackgroundTaskObject[] = [];
  jobsHistory: ModelJob[][] = [];
  cronJob: Record<string, unknown>;
  conflicts = 0;

  constructor(spec: Record<string, unknown>) {
    this.task = {
      apiVersion: "nightshift.dev/v1alpha1",
      kind: "BackgroundTask",
      metadata: {
        name: "t",
        namespace: "ns",
        uid: TASK_UID,
        generation: 1,
        resourceVersion: String(this.rv++),
      },
      spec: spec as never,
    };
    const validation = validateTask(this.task, { exists: () => true, imageAllowed: () => true });
    if (!validation.valid) throw new Error(validation.message);
    const desired = desiredCronJob(this.task, validation, settings);
    this.cronJob = { ...desired, metadata: { ...desired.metadata, uid: "cronjob-uid" } };
    this.snapshot();
  }

  iso(offsetMs = 0): string {
    return new Date(this.now + offsetMs).toISOString().replace(/\.\d+Z$/, "Z");
  }

  /** Snapshots taken so far; only the newest few are kept (caches lag by a few at most). */
  snapshots = 0;

  snapshot(): void {
    this.taskHistory.push(clone(this.task));
    this.jobsHistory.push([...this.jobs.values()].map(clone));
    this.snapshots++;
    if (this.taskHistory.length > 6) {
      this.taskHistory.shift();
      this.jobsHistory.shift();
    }
  }

  /** The snapshot with absolute number `n` (clamped to the ones kept). */
  at<T>(history: T[], n: number): T {
    const index = Math.max(0, history.length - 1 - (this.snapshots - n));
    return history[Math.min(index, history.length - 1)] as T;
  }

  tick(ms = 1000): void {
    this.now += ms;
  }

  /** The CronJob controller starting a scheduled run (not yet synced: no start time). */
  spawn(snapshot = true, synced = true): ModelJob {
    const name = `t-${this.uidSeq}`;
    const job: ModelJob = {
      metadata: {
        name,
        uid: `job-${this.uidSeq++}`,
        resourceVersion: String(this.rv++),
        creationTimestamp: this.iso(),
        annotations: { [TASK_UID_ANNOTATION]: TASK_UID },
        finalizers: [],
      },
      status: synced ? { startTime: this.iso(), active: 1 } : {},
    };
    this.jobs.set(name, job);
    if (snapshot) this.snapshot();
    return job;
  }

  /** The Job controller's first sync of every Job it has not started yet. */
  syncJobs(): void {
    for (const job of this.jobs.values())
      if (!job.outcome && !job.status?.startTime) {
        job.status = { startTime: this.iso(), active: 1 };
        job.metadata.resourceVersion = String(this.rv++);
      }
    this.snapshot();
  }

  finish(index: number, outcome: "Succeeded" | "Failed", snapshot = true): void {
    const running = [...this.jobs.values()].filter((j) => !j.outcome);
    const job = running[index % Math.max(1, running.length)];
    if (job) this.finishJob(job, outcome, snapshot);
  }

  finishJob(job: ModelJob, outcome: "Succeeded" | "Failed", snapshot = true): void {
    job.outcome = outcome;
    job.metadata.resourceVersion = String(this.rv++);
    job.status = {
      startTime: job.status?.startTime,
      ...(outcome === "Succeeded" ? { completionTime: this.iso() } : {}),
      conditions: [
        {
          type: outcome === "Succeeded" ? "Complete" : "Failed",
          status: "True",
          lastTransitionTime: this.iso(),
          ...(outcome === "Failed" ? { reason: "BackoffLimitExceeded" } : {}),
        },
      ],
    };
    this.truth.set(job.metadata.uid, outcome);
    if (snapshot) this.snapshot();
  }

  podsOf(job: RunJob): RunPod[] {
    const model = this.jobs.get(job.metadata.name) ?? (job as ModelJob);
    if (!model.outcome) return [];
    return [
      {
        metadata: { name: `${job.metadata.name}-pod` },
        status: {
          containerStatuses: [
            {
              name: "task",
              state: {
                terminated: {
                  exitCode: model.outcome === "Succeeded" ? 0 : 75,
                  finishedAt: model.status?.completionTime ?? this.iso(),
                },
              },
            },
          ],
        },
      },
    ];
  }

  private removeIfReleased(job: ModelJob): void {
    if (job.metadata.deletionTimestamp && (job.metadata.finalizers ?? []).length === 0)
      this.jobs.delete(job.metadata.name);
  }

  /** Carries out actions as the apiserver would; returns false when a write conflicts (the rest is skipped). */
  execute(actions: Action[], crashAfter: number, statusRv: string | undefined): boolean {
    for (const [index, action] of actions.entries()) {
      if (index >= crashAfter) return true;
      const job = "job" in action ? this.jobs.get(action.job.metadata.name) : undefined;
      const sameJob = job && "job" in action && job.metadata.uid === action.job.metadata.uid;
      switch (action.kind) {
        case "addFinalizer":
          if (
            sameJob &&
            !job.metadata.deletionTimestamp &&
            !job.metadata.finalizers?.includes(RUN_FINALIZER)
          ) {
            job.metadata.finalizers = [...(job.metadata.finalizers ?? []), RUN_FINALIZER];
            job.metadata.resourceVersion = String(this.rv++);
          }
          break;
        case "releaseJob":
          if (sameJob) {
            job.metadata.finalizers = (job.metadata.finalizers ?? []).filter(
              (f) => f !== RUN_FINALIZER,
            );
            if (action.recorded)
              job.metadata.annotations = {
                ...job.metadata.annotations,
                [RECORDED_ANNOTATION]: "true",
              };
            job.metadata.resourceVersion = String(this.rv++);
            this.removeIfReleased(job);
          }
          break;
        case "deleteJob":
          if (sameJob) {
            job.metadata.deletionTimestamp ??= this.iso();
            job.metadata.resourceVersion = String(this.rv++);
            this.removeIfReleased(job);
          }
          break;
        case "createJob": {
          if (this.jobs.has(action.name)) break; // AlreadyExists
          const metadata = action.body.metadata as RunJob["metadata"];
          this.jobs.set(action.name, {
            metadata: {
              name: action.name,
              uid: `job-${this.uidSeq++}`,
              resourceVersion: String(this.rv++),
              creationTimestamp: this.iso(),
              annotations: { ...metadata.annotations },
              finalizers: [...(metadata.finalizers ?? [])],
            },
            status: { startTime: this.iso(), active: 1 },
          });
          break;
        }
        case "applyCronJob":
          this.cronJob = {
            ...action.cronJob,
            metadata: { ...action.cronJob.metadata, uid: "cronjob-uid" },
          };
          break;
        case "writeStatus":
          if (statusRv !== this.task.metadata.resourceVersion) {
            this.conflicts++;
            this.snapshot();
            return false;
          }
          this.task = {
            ...this.task,
            metadata: { ...this.task.metadata, resourceVersion: String(this.rv++) },
            status: applyMergePatch(this.task.status ?? {}, action.patch) as BackgroundTaskStatus,
          };
          // The reconciler keeps the action's status as what the apiserver now holds.
          expect(asJson(this.task.status)).toEqual(asJson(action.status));
          break;
        case "event":
          break;
      }
    }
    this.snapshot();
    return true;
  }
}

/** A controller process: caches that only move forward, but may lag the server. */
class ModelOperator {
  private taskSeen = 0;
  private jobsSeen = 0;
  private readonly cluster: ModelCluster;

  constructor(cluster: ModelCluster) {
    this.cluster = cluster;
  }

  restart(): void {
    // A new process lists everything afresh.
    this.taskSeen = this.cluster.snapshots;
    this.jobsSeen = this.cluster.snapshots;
  }

  reconcile(taskLag: number, jobsLag: number, crashAfter = Number.POSITIVE_INFINITY): Action[] {
    const c = this.cluster;
    this.taskSeen = Math.max(this.taskSeen, c.snapshots - taskLag);
    this.jobsSeen = Math.max(this.jobsSeen, c.snapshots - jobsLag);
    const task = clone(c.at(c.taskHistory, this.taskSeen));
    const jobs = clone(c.at(c.jobsHistory, this.jobsSeen));
    const decided = plan({
      task,
      validation: validateTask(task, { exists: () => true, imageAllowed: () => true }),
      jobs,
      podsOf: (job) => c.podsOf(job),
      cronJob: clone(c.cronJob) as never,
      settings,
      now: new Date(c.now),
    });
    c.execute(decided.actions, crashAfter, task.metadata.resourceVersion);
    return decided.actions;
  }

  /** Reconciles with fresh caches until nothing is left to do. */
  settle(maxRounds: number): void {
    for (let round = 0; round < maxRounds; round++) {
      this.cluster.tick(5000);
      const actions = this.reconcile(0, 0);
      if (actions.every((a) => a.kind === "event")) return;
    }
    throw new Error(`not settled after ${maxRounds} rounds`);
  }
}

function expectExactlyOnce(cluster: ModelCluster): void {
  const status = cluster.task.status ?? {};
  const truth = [...cluster.truth.values()];
  // Runs the operator started itself (retries) finish too: count them all.
  expect(status.runs?.total ?? 0).toBe(truth.length);
  expect(status.runs?.succeeded ?? 0).toBe(truth.filter((o) => o === "Succeeded").length);
  expect(status.runs?.failed ?? 0).toBe(truth.filter((o) => o === "Failed").length);
  const held = [...cluster.jobs.values()].filter(
    (j) => j.outcome && j.metadata.finalizers?.includes(RUN_FINALIZER),
  );
  expect(held.map((j) => j.metadata.name)).toEqual([]);
}

const step = fc.oneof(
  { arbitrary: fc.constant({ kind: "spawn" as const }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("finish" as const),
      index: fc.nat(20),
      outcome: fc.constantFrom("Succeeded" as const, "Failed" as const),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("reconcile" as const),
      taskLag: fc.nat(3),
      jobsLag: fc.nat(3),
      crashAfter: fc.option(fc.nat(12), { nil: undefined }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("outage" as const),
      runs: fc.nat(400),
      failEvery: fc.integer({ min: 2, max: 7 }),
    }),
    weight: 1,
  },
);

type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function runHistory(spec: Record<string, unknown>, steps: Step[]): ModelCluster {
  const cluster = new ModelCluster(spec);
  const operator = new ModelOperator(cluster);
  for (const s of steps) {
    cluster.tick();
    if (s.kind === "spawn") cluster.spawn();
    else if (s.kind === "finish") cluster.finish(s.index, s.outcome);
    else if (s.kind === "outage") {
      for (let i = 0; i < s.runs; i++) {
        const job = cluster.spawn(false);
        cluster.tick(10);
        cluster.finishJob(job, i % s.failEvery === 0 ? "Failed" : "Succeeded", false);
      }
      cluster.snapshot();
      operator.restart();
    } else {
      operator.reconcile(s.taskLag, s.jobsLag, s.crashAfter);
      if (s.crashAfter !== undefined) operator.restart();
    }
  }
  // Every run still going finishes, then the operator catches up.
  for (const job of [...cluster.jobs.values()]) if (!job.outcome) cluster.finish(0, "Succeeded");
  operator.settle(400);
  // Retries started while settling finish too.
  for (let i = 0; i < 20; i++) {
    const running = [...cluster.jobs.values()].filter((j) => !j.outcome);
    if (running.length === 0) break;
    for (const _ of running) cluster.finish(0, "Succeeded");
    operator.settle(400);
  }
  return cluster;
}

const baseSpec = {
  task: "http.request",
  params: { url: "http://peer.example/hook" },
  schedule: "0 0 1 1 *",
  concurrencyPolicy: "Allow",
};

describe("active runs over generated histories", () => {
  const activeStep = fc.oneof(
    fc.record({ kind: fc.constant("spawn" as const), synced: fc.boolean() }),
    fc.constant({ kind: "sync" as const }),
    fc.record({
      kind: fc.constant("finish" as const),
      index: fc.nat(20),
      outcome: fc.constantFrom("Succeeded" as const, "Failed" as const),
    }),
    fc.record({
      kind: fc.constant("reconcile" as const),
      taskLag: fc.nat(3),
      jobsLag: fc.nat(3),
    }),
  );

  it("once settled, status.active lists exactly the runs the Job controller has started", () => {
    fc.assert(
      fc.property(fc.array(activeStep, { maxLength: 40 }), (steps) => {
        const cluster = new ModelCluster(baseSpec);
        const operator = new ModelOperator(cluster);
        for (const s of steps) {
          cluster.tick();
          if (s.kind === "spawn") cluster.spawn(true, s.synced);
          else if (s.kind === "sync") cluster.syncJobs();
          else if (s.kind === "finish") cluster.finish(s.index, s.outcome);
          else operator.reconcile(s.taskLag, s.jobsLag);
        }
        operator.settle(400);
        const started = [...cluster.jobs.values()]
          .filter((j) => !j.outcome && j.status?.startTime)
          .map((j) => j.metadata.name)
          .sort();
        const shown = (cluster.task.status?.active ?? []).map((run) => run.name).sort();
        expect(shown).toEqual(started);
      }),
      { numRuns: 150 },
    );
  }, 120_000);
});

describe("run accounting over generated histories (model of the apiserver)", () => {
  it("counts every finished run exactly once and releases every Job, whatever the crashes, lags and outages", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.nat(6), (steps, historyLimit) => {
        const cluster = runHistory(
          {
            ...baseSpec,
            successfulRunsHistoryLimit: historyLimit,
            failedRunsHistoryLimit: historyLimit,
          },
          steps,
        );
        expectExactlyOnce(cluster);
      }),
      { numRuns: 150 },
    );
  }, 120_000);

  it("holds with delayed retries, whose restarts must not start a second retry run", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const cluster = runHistory(
          {
            ...baseSpec,
            retry: { backoff: { initialDelay: "1s", factor: 2, maxDelay: "10s", maxRetries: 2 } },
          },
          steps,
        );
        expectExactlyOnce(cluster);
        const retries = [...cluster.jobs.values()].filter(
          (j) => j.metadata.annotations?.[RUN_KIND_ANNOTATION] === "retry",
        );
        expect(new Set(retries.map((j) => j.metadata.name)).size).toBe(retries.length);
      }),
      { numRuns: 80 },
    );
  }, 120_000);

  it("records a backlog of 5,000 runs finished during an outage exactly once, in bounded writes", () => {
    const cluster = runHistory(
      { ...baseSpec, successfulRunsHistoryLimit: 2, failedRunsHistoryLimit: 2 },
      [
        { kind: "spawn" },
        { kind: "outage", runs: 5000, failEvery: 5 },
        { kind: "reconcile", taskLag: 0, jobsLag: 2, crashAfter: 7 },
        { kind: "reconcile", taskLag: 1, jobsLag: 0, crashAfter: undefined },
      ],
    );
    expectExactlyOnce(cluster);
    expect(cluster.task.status?.runs?.total).toBe(5001);
    expect((cluster.task.status?.recordedJobs ?? []).length).toBeLessThanOrEqual(300);
  }, 120_000);
});
