// Priorities and queues for real: the operator against real Kueue on the
// local control plane (pods on kwok's fake node). A ClusterQueue whose quota
// fits 3 runs admits 20 runs of mixed priority highest first; a high-priority
// run preempts a low one; every run is counted exactly once.
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { eventually, kubectl } from "./support/cluster.ts";
import {
  applyKueue,
  clusterQueue,
  enableKueue,
  kueueForSuite,
  localQueue,
  PRIORITY_VALUES,
  priorityClasses,
  resourceFlavor,
} from "./support/kueue.ts";
import { operatorForSuite } from "./support/operator.ts";
import { startScheduledRun } from "./support/runs.ts";
import { getJson, jobsOf, task, waitForCondition, waitForStatus } from "./support/tasks.ts";

type Level = "low" | "normal" | "high";
const PRIORITY: Record<Level, number> = {
  low: PRIORITY_VALUES["nightshift-low"],
  normal: 0,
  high: PRIORITY_VALUES["nightshift-high"],
};

/** What the observer reads of watched pods and Workloads. */
interface Watched {
  metadata: { name: string; resourceVersion?: string };
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string; reason?: string }>;
  };
}

/** Pods and Workloads of a namespace as they change, from watches (no polling gaps). */
class Observer {
  running = new Set<string>();
  maxRunning = 0;
  /** Workloads in the order Kueue admitted them (first admission only). */
  admitted: string[] = [];
  /** Workloads preempted at least once. */
  preempted = new Set<string>();
  private stopped = false;
  private readonly aborts: AbortController[] = [];

  async start(namespace: string): Promise<void> {
    await Promise.all([
      this.follow(`/api/v1/namespaces/${namespace}/pods`, (phase, pod) => {
        const name = pod.metadata.name;
        if (phase !== "DELETED" && pod.status?.phase === "Running") this.running.add(name);
        else this.running.delete(name);
        this.maxRunning = Math.max(this.maxRunning, this.running.size);
      }),
      this.follow(
        `/apis/kueue.x-k8s.io/v1beta2/namespaces/${namespace}/workloads`,
        (_, workload) => {
          const name = workload.metadata.name;
          const conditions: Array<{ type: string; status: string; reason?: string }> =
            workload.status?.conditions ?? [];
          const isAdmitted = conditions.some((c) => c.type === "Admitted" && c.status === "True");
          if (isAdmitted && !this.admitted.includes(name)) this.admitted.push(name);
          // Kueue marks a preempted workload Preempted=True and Evicted=True (reason Preempted).
          if (
            conditions.some(
              (c) =>
                c.status === "True" &&
                (c.type === "Preempted" || (c.type === "Evicted" && c.reason === "Preempted")),
            )
          )
            this.preempted.add(name);
        },
      ),
    ]);
  }

  /** A watch that resumes from the last resourceVersion it saw whenever the stream ends. */
  private async follow(
    path: string,
    onEvent: (phase: string, object: Watched) => void,
  ): Promise<void> {
    const kc = new KubeConfig();
    kc.loadFromFile(inject("kubeconfigPath"));
    let resourceVersion: string | undefined;
    const start = async (): Promise<void> => {
      const abort = await new Watch(kc).watch(
        path,
        resourceVersion ? { resourceVersion, allowWatchBookmarks: true } : {},
        (phase, object) => {
          if (object?.metadata?.resourceVersion) resourceVersion = object.metadata.resourceVersion;
          if (phase !== "BOOKMARK") onEvent(phase, object);
        },
        (error) => {
          if (this.stopped) return;
          if (error) console.log(`watch ${path} ended: ${String(error)}; resuming`);
          setTimeout(() => void start().catch(() => {}), 500);
        },
      );
      this.aborts.push(abort);
    };
    await start();
  }

  stop(): void {
    this.stopped = true;
    for (const abort of this.aborts) abort.abort();
  }
}

function queuedTask(namespace: string, name: string, level: Level, queueName: string) {
  return task(namespace, name, {
    task: "http.request",
    schedule: "0 0 1 1 *",
    params: { url: "https://example.com" },
    priority: level,
    queueName,
    resources: { requests: { cpu: "1", memory: "64Mi" } },
  });
}

async function applyTasks(objects: object[]): Promise<void> {
  kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }));
}

/** Workload name → the priority level of the task whose run it admits. */
function workloadLevels(namespace: string, levelOf: (taskName: string) => Level) {
  const list = JSON.parse(kubectl(["get", "workloads", "-n", namespace, "-o", "json"]));
  const map = new Map<string, Level>();
  for (const w of list.items) {
    const job = w.metadata.ownerReferences?.find((o: { kind: string }) => o.kind === "Job")?.name;
    const taskName = getJson(["job", job, "-n", namespace])?.metadata.labels["nightshift.dev/task"];
    if (taskName) map.set(w.metadata.name, levelOf(taskName));
  }
  return map;
}

describe("Kueue", () => {
  kueueForSuite();

  describe("priorities and queues", () => {
    const suite = operatorForSuite("kueue", {
      priorityClasses: "low=nightshift-low,high=nightshift-high,critical=nightshift-critical",
      // No WorkloadPriorityClass for critical: queued critical tasks are invalid.
      workloadPriorityClasses: "low=nightshift-low,high=nightshift-high",
    });
    const observer = new Observer();
    const fits3 = () => `nightshift-fits3-${suite.ns}`;
    const preempting = () => `nightshift-preempt-${suite.ns}`;

    beforeAll(async () => {
      enableKueue(suite.ns);
      await applyKueue([
        ...priorityClasses(),
        resourceFlavor,
        clusterQueue(fits3(), 3, { hold: true, strict: true }),
        clusterQueue(preempting(), 2, { preemption: true }),
        localQueue(suite.ns, "batch", fits3()),
        localQueue(suite.ns, "urgent", preempting()),
      ]);
      await observer.start(suite.ns);
    });
    afterAll(() => {
      observer.stop();
      kubectl([
        "delete",
        "clusterqueue",
        fits3(),
        preempting(),
        "--ignore-not-found",
        "--wait=false",
      ]);
    });

    it("names spec.priority when a queued task's priority maps to no WorkloadPriorityClass", async () => {
      await applyTasks([queuedTask(suite.ns, "critical-batch", "high", "batch")]);
      kubectl([
        "patch",
        "bgt",
        "critical-batch",
        "-n",
        suite.ns,
        "--type=merge",
        "-p",
        '{"spec":{"priority":"critical"}}',
      ]);
      const invalid = await waitForCondition(
        suite.ns,
        "critical-batch",
        "SpecValid",
        "False",
        "UnmappedPriority",
      );
      expect(
        invalid.status?.conditions.find((c: { type: string }) => c.type === "SpecValid").message,
      ).toMatch(/^spec\.priority: "critical" maps to no Kueue WorkloadPriorityClass/);
      kubectl(["delete", "bgt", "critical-batch", "-n", suite.ns]);
    });

    it("admits 20 runs of mixed priority through a queue that fits 3, highest priority first, each counted once", async () => {
      const levels: Level[] = ["low", "normal", "high"];
      const names = Array.from({ length: 20 }, (_, i) => `mixed-${String(i).padStart(2, "0")}`);
      const levelOf = (name: string) => levels[Number(name.slice(-2)) % 3] as Level;
      await applyTasks(names.map((n) => queuedTask(suite.ns, n, levelOf(n), "batch")));
      for (const n of names) await waitForCondition(suite.ns, n, "Ready", "True");
      const cj = getJson(["cronjob", "mixed-00", "-n", suite.ns]);
      expect(cj?.spec.jobTemplate.spec.suspend).toBe(true);
      expect(cj?.spec.jobTemplate.metadata.labels).toMatchObject({
        "kueue.x-k8s.io/queue-name": "batch",
        "kueue.x-k8s.io/priority-class": "nightshift-low",
      });

      // All 20 submitted while the ClusterQueue holds admission, so the queue decides the order.
      for (const n of names) startScheduledRun(suite.ns, n, `${n}-run`, { duration: "3s" });
      for (const n of names) {
        const queued = await waitForStatus(
          suite.ns,
          n,
          "queued run",
          (s) => s.phase === "Queued",
          60_000,
        );
        expect(queued.status?.active).toEqual([
          { name: `${n}-run`, queuedSince: expect.any(String) },
        ]);
        expect(queued.status?.runs?.total ?? 0).toBe(0);
      }
      expect(observer.running.size).toBe(0);

      kubectl([
        "patch",
        "clusterqueue",
        fits3(),
        "--type=merge",
        "-p",
        '{"spec":{"stopPolicy":"None"}}',
      ]);
      for (const n of names)
        await waitForStatus(
          suite.ns,
          n,
          "one run recorded",
          (s) => s.runs?.total === 1 && s.lastRun?.jobName === `${n}-run`,
          240_000,
        );

      expect(observer.maxRunning).toBeGreaterThan(0);
      expect(observer.maxRunning).toBeLessThanOrEqual(3);
      // Admission order never lets a lower priority ahead of a higher one that was waiting.
      const byWorkload = workloadLevels(suite.ns, levelOf);
      const order = observer.admitted.map((w) => PRIORITY[byWorkload.get(w) ?? "normal"]);
      expect(order).toHaveLength(20);
      expect(order).toEqual([...order].sort((a, b) => b - a));

      for (const n of names) {
        const done = getJson(["bgt", n, "-n", suite.ns]);
        expect(done?.status?.runs).toEqual({ total: 1, succeeded: 1, failed: 0 });
        expect(done?.status?.lastRun).toMatchObject({
          outcome: "Succeeded",
          queuedSeconds: expect.any(Number),
        });
        const [job] = jobsOf(suite.ns, n);
        expect(job?.metadata.annotations["nightshift.dev/recorded"]).toBe("true");
      }
      const waited = (level: Level) => {
        const mine = names.filter((n) => levelOf(n) === level);
        return (
          mine.reduce(
            (sum, n) =>
              sum + (getJson(["bgt", n, "-n", suite.ns])?.status?.lastRun.queuedSeconds ?? 0),
            0,
          ) / mine.length
        );
      };
      console.log(
        `mean queue wait: high ${waited("high")} s, normal ${waited("normal")} s, low ${waited("low")} s`,
      );
      expect(waited("high")).toBeLessThanOrEqual(waited("low"));
    }, 420_000);

    it("preempts a low-priority run for a high one; the preempted run queues again and is counted once", async () => {
      const tasks = { "low-a": "low", "low-b": "low", "high-a": "high" } as const;
      await applyTasks(
        Object.entries(tasks).map(([n, level]) => queuedTask(suite.ns, n, level, "urgent")),
      );
      for (const n of Object.keys(tasks)) await waitForCondition(suite.ns, n, "Ready", "True");
      startScheduledRun(suite.ns, "low-a", "low-a-run", { duration: "20s" });
      startScheduledRun(suite.ns, "low-b", "low-b-run", { duration: "20s" });
      for (const n of ["low-a", "low-b"])
        await waitForStatus(
          suite.ns,
          n,
          "running",
          (s) => s.phase === "Running" && !s.active?.[0]?.queuedSince,
          60_000,
        );

      startScheduledRun(suite.ns, "high-a", "high-a-run", { duration: "2s" });
      // One low run gives way: Kueue suspends its Job, and its task shows it queued again.
      const requeued = await eventually(
        () => {
          for (const n of ["low-a", "low-b"]) {
            const t = getJson(["bgt", n, "-n", suite.ns]);
            if (t?.status?.phase === "Queued") return n;
          }
          return undefined;
        },
        { what: "a low-priority run preempted and queued again", timeoutMs: 60_000 },
      );
      // The task's status and the Workload watch arrive independently.
      await eventually(() => (observer.preempted.size > 0 ? true : undefined), {
        what: "the Workload marked preempted",
        timeoutMs: 60_000,
      });
      expect(observer.preempted.size).toBe(1);
      for (const n of Object.keys(tasks))
        await waitForStatus(suite.ns, n, "one run recorded", (s) => s.runs?.total === 1, 180_000);
      for (const n of Object.keys(tasks)) {
        const done = getJson(["bgt", n, "-n", suite.ns]);
        // Preemption is not the task's fault: not a failure, and the run is counted once.
        expect(done?.status?.runs).toEqual({ total: 1, succeeded: 1, failed: 0 });
      }
      const high = getJson(["bgt", "high-a", "-n", suite.ns]);
      const preempted = getJson(["bgt", requeued, "-n", suite.ns]);
      expect(Date.parse(high?.status?.lastRun.completionTime)).toBeLessThanOrEqual(
        Date.parse(preempted?.status?.lastRun.completionTime),
      );
    }, 300_000);
  });

  describe("deferring low-priority runs while their queue is saturated", () => {
    const suite = operatorForSuite("defer", { queueSaturation: 3 });
    const held = () => `nightshift-held-${suite.ns}`;

    beforeAll(async () => {
      enableKueue(suite.ns);
      await applyKueue([
        ...priorityClasses(),
        resourceFlavor,
        clusterQueue(held(), 3, { hold: true }),
        localQueue(suite.ns, "busy", held()),
      ]);
    });
    afterAll(() => {
      kubectl(["delete", "clusterqueue", held(), "--ignore-not-found", "--wait=false"]);
    });

    it("holds a low-priority task's schedule while its queue has 3 pending runs, and resumes it when the queue drains", async () => {
      const fillers = ["filler-0", "filler-1", "filler-2"];
      await applyTasks([
        queuedTask(suite.ns, "lazy", "low", "busy"),
        ...fillers.map((n) => queuedTask(suite.ns, n, "high", "busy")),
      ]);
      for (const n of ["lazy", ...fillers]) await waitForCondition(suite.ns, n, "Ready", "True");
      await waitForCondition(suite.ns, "lazy", "Deferred", "False", "QueueAvailable");

      for (const n of fillers) startScheduledRun(suite.ns, n, `${n}-run`, { duration: "1s" });
      const deferred = await waitForCondition(
        suite.ns,
        "lazy",
        "Deferred",
        "True",
        "QueueSaturated",
      );
      expect(deferred.status?.deferral).toMatchObject({ active: true, since: expect.any(String) });
      expect(getJson(["cronjob", "lazy", "-n", suite.ns])?.spec.suspend).toBe(true);
      expect(await suite.operator.metric("nightshift_tasks_deferred")).toBe(1);
      // High-priority tasks on the same queue keep their schedule.
      expect(getJson(["bgt", "filler-0", "-n", suite.ns])?.status?.deferral).toBeUndefined();
      expect(getJson(["cronjob", "filler-0", "-n", suite.ns])?.spec.suspend).toBe(false);

      kubectl([
        "patch",
        "clusterqueue",
        held(),
        "--type=merge",
        "-p",
        '{"spec":{"stopPolicy":"None"}}',
      ]);
      const resumed = await waitForCondition(
        suite.ns,
        "lazy",
        "Deferred",
        "False",
        "QueueAvailable",
      );
      expect(resumed.status?.deferral).toBeUndefined();
      expect(getJson(["cronjob", "lazy", "-n", suite.ns])?.spec.suspend).toBe(false);
      expect(await suite.operator.metric("nightshift_tasks_deferred")).toBe(0);
    }, 180_000);
  });
});
