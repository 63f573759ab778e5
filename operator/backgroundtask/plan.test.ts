// The planner and its parts, one defect at a time: each case below failed
// before the design it checks (issue 8's list).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BackgroundTaskObject, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { circuitAfterRuns, halfOpen } from "./circuit.ts";
import { cronJobDrift, desiredCronJob } from "./desired-cronjob.ts";
import {
  RECORDED_ANNOTATION,
  RESET_CIRCUIT_ANNOTATION,
  RUN_FINALIZER,
  RUN_NOW_ANNOTATION,
  TASK_UID_ANNOTATION,
} from "./labels.ts";
import { type Action, type Observation, plan } from "./plan.ts";
import { rejectionFrom } from "./rejection.ts";
import { planRetry } from "./retry.ts";
import type { RunJob } from "./runs.ts";
import { mergePatchDiff } from "./status.ts";
import { applyMergePatch } from "./testing/merge-patch.ts";
import { type ValidTask, validateTask } from "./validate.ts";

const settings = {
  runnerImage: "runner:1",
  runnerImagePullPolicy: "IfNotPresent",
  priorityClasses: {},
} as never;
const NOW = new Date("2026-05-01T12:00:00Z");

function taskWith(
  spec: Record<string, unknown>,
  status?: BackgroundTaskStatus,
  annotations?: Record<string, string>,
): BackgroundTaskObject {
  return {
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: {
      name: "t",
      namespace: "ns",
      uid: "uid-1",
      generation: 1,
      resourceVersion: "10",
      ...(annotations ? { annotations } : {}),
    },
    spec: {
      task: "http.request",
      params: { url: "http://peer/hook" },
      schedule: "0 0 1 1 *",
      ...spec,
    } as never,
    ...(status ? { status } : {}),
  };
}

function liveCronJob(task: BackgroundTaskObject, circuitOpen = false) {
  const validation = validateTask(task, {
    exists: () => true,
    imageAllowed: () => true,
  }) as ValidTask;
  const desired = desiredCronJob(task, validation, settings, circuitOpen);
  return { ...desired, metadata: { ...desired.metadata, uid: "cj-uid" } };
}

function finishedJob(
  name: string,
  uid: string,
  outcome: "Succeeded" | "Failed",
  at: string,
  extra: Partial<RunJob["metadata"]> = {},
): RunJob {
  return {
    metadata: {
      name,
      uid,
      finalizers: [RUN_FINALIZER],
      annotations: { [TASK_UID_ANNOTATION]: "uid-1" },
      ...extra,
    },
    status: {
      startTime: at,
      ...(outcome === "Succeeded" ? { completionTime: at } : {}),
      conditions: [
        {
          type: outcome === "Succeeded" ? "Complete" : "Failed",
          status: "True",
          lastTransitionTime: at,
          ...(outcome === "Failed" ? { reason: "BackoffLimitExceeded" } : {}),
        },
      ],
    },
  };
}

function observe(
  task: BackgroundTaskObject,
  jobs: RunJob[],
  extra: Partial<Observation> = {},
): Observation {
  return {
    task,
    validation: validateTask(task, { exists: () => true, imageAllowed: () => true }),
    jobs,
    podsOf: (job) =>
      job.status?.conditions?.length
        ? [
            {
              metadata: { name: `${job.metadata.name}-p` },
              status: {
                containerStatuses: [
                  {
                    name: "task",
                    state: {
                      terminated: {
                        exitCode: job.status.conditions[0]?.type === "Complete" ? 0 : 65,
                        message:
                          job.status.conditions[0]?.type === "Complete"
                            ? '{"ok":true}'
                            : '{"error":"exit 65"}',
                      },
                    },
                  },
                ],
              },
            },
          ]
        : [],
    cronJob: liveCronJob(task) as never,
    settings,
    now: NOW,
    ...extra,
  };
}

const kinds = (actions: Action[]) => actions.map((a) => a.kind);

describe("status writes (defect 1)", () => {
  it("a merge patch turns any status into exactly the computed one", () => {
    const json = fc.dictionary(
      fc.constantFrom("a", "b", "c", "lastRun", "retry"),
      fc.oneof(
        fc.integer(),
        fc.string(),
        fc.dictionary(
          fc.constantFrom("x", "y", "reason", "message"),
          fc.oneof(fc.integer(), fc.string()),
        ),
      ),
    );
    fc.assert(
      fc.property(json, json, (current, desired) => {
        const patch = mergePatchDiff(current, desired);
        expect(patch === undefined ? current : applyMergePatch(current, patch)).toEqual(desired);
      }),
    );
  });

  it("a success after a failure leaves no reason or message of the failure in lastRun", () => {
    const failed = taskWith({});
    const first = plan(
      observe(failed, [finishedJob("t-1", "j1", "Failed", "2026-05-01T11:00:00Z")]),
    );
    const stored = {
      ...failed,
      metadata: { ...failed.metadata, resourceVersion: "11" },
      status: first.status,
    };
    const second = plan(
      observe(stored, [
        finishedJob("t-1", "j1", "Failed", "2026-05-01T11:00:00Z"),
        finishedJob("t-2", "j2", "Succeeded", "2026-05-01T11:30:00Z"),
      ]),
    );
    const write = second.actions.find((a) => a.kind === "writeStatus");
    if (write?.kind !== "writeStatus") throw new Error("no status write");
    const after = applyMergePatch(first.status, write.patch) as BackgroundTaskStatus;
    expect(after).toEqual(second.status);
    expect(after.lastRun).toEqual(
      expect.objectContaining({ outcome: "Succeeded", exitCode: 0, message: '{"ok":true}' }),
    );
    expect(after.lastRun?.reason).toBeUndefined();
  });
});

describe("retries (defect 3)", () => {
  const spec = {
    retry: { backoff: { initialDelay: "1m", factor: 2, maxDelay: "1h", maxRetries: 3 } },
  };
  it("plans the same time and Job name however often it is decided", () => {
    const task = validateTask(taskWith(spec), {
      exists: () => true,
      imageAllowed: () => true,
    }) as ValidTask;
    const failed = { uid: "job-uid-7", kind: "scheduled", finishedAt: NOW };
    const a = planRetry(task.spec, failed, undefined, undefined, (s) => `r-${s}`);
    const b = planRetry(task.spec, failed, undefined, undefined, (s) => `r-${s}`);
    expect(a).toEqual(b);
    expect(a?.jobName).toBe("r-job-uid-7/0");
    const other = planRetry(
      task.spec,
      { ...failed, uid: "job-uid-8" },
      undefined,
      undefined,
      (s) => `r-${s}`,
    );
    expect(other?.nextRetryTime).not.toBe(a?.nextRetryTime); // jitter differs between runs, not between decisions
  });

  it("a crash between creating the retry Job and writing status starts no second retry", () => {
    const task = taskWith({ ...spec, concurrencyPolicy: "Allow" });
    const failure = finishedJob("t-1", "j1", "Failed", "2026-05-01T11:00:00Z");
    const first = plan(observe(task, [failure], { now: new Date("2026-05-01T11:00:05Z") }));
    const stored = { ...task, status: first.status };
    const due = new Date(Date.parse(first.status.retry?.nextRetryTime ?? "") + 1000);
    const start = plan(observe(stored, [failure], { now: due }));
    const created = start.actions.filter((a) => a.kind === "createJob");
    expect(created).toHaveLength(1);
    // The status write never happened; the operator decides again, now seeing the Job it created.
    const name = created[0]?.kind === "createJob" ? created[0].name : "";
    const again = plan(
      observe(
        stored,
        [
          failure,
          {
            metadata: {
              name,
              uid: "j-r",
              finalizers: [RUN_FINALIZER],
              annotations: { [TASK_UID_ANNOTATION]: "uid-1" },
            },
          },
        ],
        { now: new Date(due.getTime() + 5000) },
      ),
    );
    expect(kinds(again.actions)).not.toContain("createJob");
    expect(again.status.retry).toEqual({ attempt: 1, jobName: name });
  });
});

describe("circuit breaker (defect 4)", () => {
  const spec = validateTask(
    taskWith({ circuitBreaker: { failureThreshold: 2, cooldown: "10m", maxCooldown: "1h" } }),
    { exists: () => true, imageAllowed: () => true },
  ) as ValidTask;
  const open = { state: "Open" as const, openedAt: "2026-05-01T11:00:00Z", cooldownSeconds: 600 };
  const trial = halfOpen(open, "t-trial", new Date("2026-05-01T11:10:00Z"));

  it("only the trial's outcome closes or re-opens a half-open circuit", () => {
    const during = new Date("2026-05-01T11:15:00Z");
    const older = circuitAfterRuns(
      spec.spec,
      trial,
      5,
      [{ jobName: "t-old", outcome: "Failed" }],
      during,
    );
    expect(older.circuit).toEqual(trial);
    const olderSuccess = circuitAfterRuns(
      spec.spec,
      open,
      0,
      [{ jobName: "t-old", outcome: "Succeeded" }],
      during,
    );
    expect(olderSuccess.circuit).toEqual(open);
    expect(
      circuitAfterRuns(spec.spec, trial, 0, [{ jobName: "t-trial", outcome: "Succeeded" }], during)
        .circuit,
    ).toEqual({ state: "Closed" });
    expect(
      circuitAfterRuns(spec.spec, trial, 3, [{ jobName: "t-trial", outcome: "Failed" }], during)
        .circuit,
    ).toEqual({ state: "Open", openedAt: "2026-05-01T11:15:00Z", cooldownSeconds: 1200 });
  });

  it("a trial that never finishes re-opens the circuit and is deleted", () => {
    const later = new Date(Date.parse("2026-05-01T11:10:00Z") + 12 * 60_000);
    const decision = circuitAfterRuns(spec.spec, trial, 3, [], later);
    expect(decision.circuit?.state).toBe("Open");
    expect(decision.trialTimedOut).toBe("t-trial");
    const task = taskWith(
      { circuitBreaker: { failureThreshold: 2, cooldown: "10m", maxCooldown: "1h" } },
      { circuit: trial, consecutiveFailures: 3 },
    );
    const stuck: RunJob = {
      metadata: {
        name: "t-trial",
        uid: "jt",
        finalizers: [RUN_FINALIZER],
        annotations: { [TASK_UID_ANNOTATION]: "uid-1" },
      },
      status: {},
    };
    const decided = plan(
      observe(task, [stuck], { now: later, cronJob: liveCronJob(task, true) as never }),
    );
    expect(decided.actions).toContainEqual(
      expect.objectContaining({ kind: "deleteJob", job: stuck }),
    );
    expect(decided.status.circuit?.state).toBe("Open");
  });

  it("run-now on a suspended task with an open circuit starts nothing", () => {
    const task = taskWith(
      {
        suspend: true,
        circuitBreaker: { failureThreshold: 2, cooldown: "10m", maxCooldown: "1h" },
      },
      { circuit: open, consecutiveFailures: 2 },
      { [RUN_NOW_ANNOTATION]: "1" },
    );
    const decided = plan(observe(task, [], { cronJob: liveCronJob(task, true) as never }));
    expect(kinds(decided.actions)).not.toContain("createJob");
    expect(decided.status.circuit).toEqual(open);
    expect(decided.status.lastRunNowValue).toBe("1");
  });

  it("a reset leaves nothing of the open circuit behind", () => {
    const task = taskWith(
      { circuitBreaker: { failureThreshold: 2, cooldown: "10m", maxCooldown: "1h" } },
      { circuit: trial, consecutiveFailures: 4 },
      { [RESET_CIRCUIT_ANNOTATION]: "r1" },
    );
    const decided = plan(observe(task, [], { cronJob: liveCronJob(task, true) as never }));
    expect(decided.status.circuit).toEqual({ state: "Closed", lastResetValue: "r1" });
  });
});

describe("apiserver refusals (defect 7)", () => {
  it("name the task's field for each refused CronJob field", () => {
    const refuse = (field: string, message: string) =>
      rejectionFrom(
        {
          statusCode: 422,
          statusMessage: `CronJob.batch "t" is invalid: ${field}: ${message}`,
          causes: [{ field, message, reason: "FieldValueInvalid" }],
        },
        1,
        "h",
      );
    expect(
      refuse("spec.schedule", 'Invalid value: "@HOURLY": unrecognized descriptor: @HOURLY')?.field,
    ).toBe("spec.schedule");
    expect(
      refuse("spec.timeZone", 'Invalid value: "europe/berlin": unknown time zone europe/berlin')
        ?.field,
    ).toBe("spec.timeZone");
    expect(
      refuse(
        "spec.jobTemplate.spec.template.labels",
        'Invalid value: "bad key!": name part must consist of…',
      )?.field,
    ).toBe("spec.podMetadata.labels");
    expect(
      refuse("spec.jobTemplate.spec.activeDeadlineSeconds", "must be greater than or equal to 0")
        ?.field,
    ).toBe("spec.timeout");
    expect(
      refuse("metadata.ownerReferences", "Only one reference can have Controller set to true"),
    ).toBeUndefined();
    expect(
      rejectionFrom({ statusCode: 409, statusMessage: "conflict", causes: [] }, 1, "h"),
    ).toBeUndefined();
  });

  it("turn into SpecValid=False naming the field, with a warning, and no CronJob apply", () => {
    const task = taskWith({ schedule: "0 0 1 1 *" });
    const rejection = {
      generation: 1,
      templateHash: "h",
      field: "spec.podMetadata.labels",
      message: "Kubernetes refused the CronJob: bad key",
    };
    const decided = plan(observe(task, [], { rejection, cronJob: undefined }));
    const specValid = decided.status.conditions?.find((c) => c.type === "SpecValid");
    expect(specValid).toEqual(
      expect.objectContaining({ status: "False", reason: "RejectedByAPIServer" }),
    );
    expect(specValid?.message).toContain("spec.podMetadata.labels");
    expect(kinds(decided.actions)).not.toContain("applyCronJob");
    expect(decided.actions).toContainEqual(
      expect.objectContaining({ kind: "event", type: "Warning", reason: "RejectedByAPIServer" }),
    );
  });
});

describe("drift (defect 9)", () => {
  it("a quantity the apiserver stored in canonical form is no drift", () => {
    const task = taskWith({ resources: { limits: { cpu: "0.5", memory: "1Gi" } } });
    const live = structuredClone(liveCronJob(task));
    const container = (
      live.spec.jobTemplate.spec as {
        template: {
          spec: { containers: Array<{ resources: { limits: Record<string, string> } }> };
        };
      }
    ).template.spec.containers[0];
    if (!container) throw new Error("no container");
    container.resources.limits = { cpu: "500m", memory: "1Gi" };
    expect(cronJobDrift(liveCronJob(task), live)).toBeUndefined();
    container.resources.limits = { cpu: "600m", memory: "1Gi" };
    expect(cronJobDrift(liveCronJob(task), live)).toMatch(/resources/);
  });
});

describe("runs stopped by their deadline", () => {
  it("wait for the runner's exit code and partial result before they are recorded", () => {
    const task = taskWith({ timeout: "1m" });
    const job = finishedJob("t-1", "j1", "Failed", "2026-05-01T11:59:50Z");
    const condition = job.status?.conditions?.[0];
    if (condition) condition.reason = "DeadlineExceeded";
    const waiting = plan(observe(task, [job], { podsOf: () => [] }));
    expect(waiting.status.runs?.total ?? 0).toBe(0);
    expect(waiting.requeueAfterMs).toBeLessThanOrEqual(500);
    const recorded = plan(observe(task, [job]));
    expect(recorded.status.lastRun).toMatchObject({ reason: "DeadlineExceeded", exitCode: 65 });
  });
});

describe("runs belong to their task's UID (defect 10)", () => {
  it("a Job of an earlier task with the same name is released, not counted", () => {
    const task = taskWith({});
    const old = finishedJob("t-1", "j-old", "Succeeded", "2026-05-01T11:00:00Z", {
      annotations: { [TASK_UID_ANNOTATION]: "uid-0" },
    });
    const decided = plan(observe(task, [old]));
    expect(decided.status.runs?.total ?? 0).toBe(0);
    expect(decided.actions).toContainEqual({ kind: "releaseJob", job: old, recorded: false });
  });
});

describe("active runs cost one status write", () => {
  it("a finished run waiting for its pod's exit code stays shown until it is recorded", () => {
    const started = finishedJob("t-1", "t-1-uid", "Succeeded", "2026-05-01T11:59:59Z");
    const running: RunJob = {
      ...started,
      status: { startTime: "2026-05-01T11:59:59Z" },
    };
    const task = taskWith({});
    const shown = { ...task, status: plan(observe(task, [running])).status };
    expect(shown.status.active).toEqual([{ name: "t-1", startTime: "2026-05-01T11:59:59Z" }]);
    // Complete a second ago, but the pod's terminated state is not in the cache yet.
    const waiting = plan(observe(shown, [started], { podsOf: () => [] }));
    expect(kinds(waiting.actions)).not.toContain("writeStatus");
    expect(waiting.requeueAfterMs).toBeLessThanOrEqual(500);
    const recorded = plan(observe(shown, [started]));
    expect(recorded.status.active).toBeUndefined();
    expect(recorded.status.runs?.total).toBe(1);
  });

  const running = (name: string, status: RunJob["status"] = {}): RunJob => ({
    metadata: { name, uid: `${name}-uid`, annotations: { [TASK_UID_ANNOTATION]: "uid-1" } },
    status,
  });
  const settled = (task: BackgroundTaskObject, jobs: RunJob[]) => {
    const decided = plan(observe(task, jobs));
    return { ...task, status: decided.status };
  };

  it("a Job shows once the Job controller starts or queues it, and stays shown until it ends", () => {
    const task = settled(taskWith({}), []);
    // Before the Job controller's first sync: hold the Job, but no status write.
    const unsynced = plan(observe(task, [running("t-1")]));
    expect(kinds(unsynced.actions)).toEqual(["addFinalizer"]);
    expect(unsynced.status.active).toBeUndefined();

    const started = plan(observe(task, [running("t-1", { startTime: "2026-05-01T11:59:59Z" })]));
    expect(started.status.active).toEqual([{ name: "t-1", startTime: "2026-05-01T11:59:59Z" }]);
    expect(kinds(started.actions)).toContain("writeStatus");

    const queued = plan(
      observe(task, [
        running("t-2", {
          conditions: [
            {
              type: "Suspended",
              status: "True",
              lastTransitionTime: "2026-05-01T11:59:58Z",
            },
          ],
        } as never),
      ]),
    );
    expect(queued.status.active).toEqual([{ name: "t-2", queuedSince: "2026-05-01T11:59:58Z" }]);

    // A run the operator started shows at once, and is not dropped while its Job lacks a start time.
    const asked = {
      ...task,
      metadata: { ...task.metadata, annotations: { [RUN_NOW_ANNOTATION]: "1" } },
    };
    const runNow = plan(observe(asked, []));
    const created = runNow.actions.find((a) => a.kind === "createJob");
    expect(created && runNow.status.active).toEqual([{ name: created?.name }]);
    const stays = plan(
      observe({ ...asked, status: runNow.status }, [running(created?.name ?? "")]),
    );
    expect(stays.status.active).toEqual([{ name: created?.name }]);
    expect(kinds(stays.actions)).not.toContain("writeStatus");
  });

  it("a released run leaves status.recordedJobs with the next write, not with one of its own", () => {
    const task = settled(taskWith({}), []);
    const finished = finishedJob("t-1", "j1", "Succeeded", "2026-05-01T11:59:59Z");
    const recording = plan(observe(task, [finished]));
    expect(recording.status.recordedJobs).toEqual(["j1"]);
    expect(kinds(recording.actions)).toEqual(["writeStatus", "releaseJob"]);
    const recorded = { ...task, status: recording.status };
    const released: RunJob = {
      ...finished,
      metadata: {
        ...finished.metadata,
        finalizers: [],
        annotations: { ...finished.metadata.annotations, [RECORDED_ANNOTATION]: "true" },
      },
    };
    const quiet = plan(observe(recorded, [released]));
    expect(kinds(quiet.actions)).toEqual([]);
    // The next run's start is written anyway, and forgets j1 on the way.
    const next = plan(
      observe(recorded, [released, running("t-2", { startTime: "2026-05-01T12:00:00Z" })]),
    );
    const write = next.actions.find((a) => a.kind === "writeStatus");
    expect(write?.kind === "writeStatus" && write.patch).toMatchObject({ recordedJobs: null });
    expect(next.status.active).toEqual([{ name: "t-2", startTime: "2026-05-01T12:00:00Z" }]);
  });
});
