// Benchmarks the operator against the local control plane and prints figures
// for DESIGN.md's targets (no assertions: numbers, measured in one run).
//   BENCH_TASKS=1000 BENCH_RUNS=300 node bench/operator.ts      (make bench)
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import type { BackgroundTaskObject } from "../crds/backgroundtask.ts";
import { desiredCronJob } from "../operator/backgroundtask/desired-cronjob.ts";
import { cronJobName } from "../operator/backgroundtask/labels.ts";
import { computeStatus, type LiveCronJob } from "../operator/backgroundtask/status.ts";
import { validateTask } from "../operator/backgroundtask/validate.ts";
import { KubeClient } from "../operator/runtime/kube-client.ts";
import { ControlPlane } from "../test/controlplane/controlplane.ts";
import { freePorts } from "../test/controlplane/processes.ts";

const TASKS = Number(process.env.BENCH_TASKS ?? 1000);
const RUNS = Number(process.env.BENCH_RUNS ?? 300);
// Runs started per second: 17/s is 1,000 tasks running every minute.
const RUN_RATE = Number(process.env.BENCH_RUN_RATE ?? 17);
const CONCURRENCY = Number(process.env.BENCH_WORKERS ?? 8);
const root = fileURLToPath(new URL("..", import.meta.url));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string) => console.log(`[bench] ${line}`);

async function pool<T>(
  items: T[],
  width: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

const task = (ns: string, name: string) => ({
  apiVersion: "nightshift.dev/v1alpha1",
  kind: "BackgroundTask",
  metadata: { name, namespace: ns },
  spec: {
    task: "http.request",
    schedule: "H H 1 1 *",
    params: { url: "https://example.com/hook" },
  },
});

const plane = new ControlPlane({ log: (l) => say(`control plane: ${l}`) });
await plane.start();
plane.kubectl(["apply", "--server-side", "-f", `${root}crds/nightshift.dev_backgroundtasks.yaml`]);
plane.kubectl(["wait", "--for=condition=Established", "crd/backgroundtasks.nightshift.dev"]);
const kc = new KubeConfig();
kc.loadFromFile(plane.kubeconfigPath);
const client = new KubeClient(kc);
const names = Array.from({ length: TASKS }, (_, i) => `task-${i}`);
for (const ns of ["baseline", "bench"])
  await client.create("/api/v1/namespaces", { metadata: { name: ns } });

// 1. Baseline: the same writes the operator makes per new task, by a plain client.
let t0 = Date.now();
// The plain client writes exactly what the operator would: the same CronJob and the same status.
const settings = {
  runnerImage: "nightshift/task-runner:bench",
  runnerImagePullPolicy: "IfNotPresent" as const,
  priorityClasses: {},
};
await pool(names, CONCURRENCY, async (name) => {
  const created = await client.create<BackgroundTaskObject>(
    "/apis/nightshift.dev/v1alpha1/namespaces/baseline/backgroundtasks",
    task("baseline", name),
  );
  const validation = validateTask(created, { exists: () => true, imageAllowed: () => true });
  if (!validation.valid) throw new Error(validation.message);
  const cronJob = desiredCronJob(created, validation, settings);
  const live = await client.apply<LiveCronJob>(
    `/apis/batch/v1/namespaces/baseline/cronjobs/${cronJob.metadata.name}`,
    cronJob,
    "bench",
  );
  const status = computeStatus({
    task: created,
    validation,
    cronJob: live,
    cronJobUpToDate: true,
    now: new Date(),
  });
  await client.mergePatch(
    `/apis/nightshift.dev/v1alpha1/namespaces/baseline/backgroundtasks/${name}/status`,
    { metadata: { resourceVersion: created.metadata.resourceVersion }, status },
  );
});
const baselineMs = Date.now() - t0;
say(
  `baseline: plain client, ${TASKS} × (create task + apply CronJob + patch status), ${CONCURRENCY} at a time: ${baselineMs} ms`,
);

// 2. The operator converging the same number of new tasks.
const [port] = await freePorts(1);
const startOperator = () =>
  spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      process.execPath,
      ...(process.env.BENCH_OPERATOR_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
      `${root}operator/main.ts`,
      "--namespaces=bench",
      `--metrics-address=127.0.0.1:${port}`,
      "--leader-elect=false",
      `--workers=${CONCURRENCY}`,
      "--runner-image=nightshift/task-runner:bench",
      "--log-level=warn",
    ],
    {
      env: { ...process.env, KUBECONFIG: plane.kubeconfigPath },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
async function metric(name: string, labels = ""): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = body
    .split("\n")
    .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line ? Number(line.split(" ").at(-1)) : 0;
}
const requests = async (verb: string) => metric("nightshift_apiserver_requests", `verb="${verb}"`);
const writes = async () =>
  (await Promise.all(["create", "update", "apply", "patch", "delete"].map(requests))).reduce(
    (a, b) => a + b,
    0,
  );
async function waitReady(): Promise<void> {
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
    } catch {}
    await sleep(100);
  }
}
let operator = startOperator();
await waitReady();
// Watched, not polled: listing 1,000 tasks every few ms would load the apiserver more than the operator does.
const ready = new Set<string>();
const readyWatch = client.watch(
  "/apis/nightshift.dev/v1alpha1/namespaces/bench/backgroundtasks",
  {},
  (_type, t: any) => {
    if (t.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True"))
      ready.add(t.metadata.name);
  },
  () => {},
);
t0 = Date.now();
await pool(names, CONCURRENCY, (name) =>
  client.create(
    "/apis/nightshift.dev/v1alpha1/namespaces/bench/backgroundtasks",
    task("bench", name),
  ),
);
while (ready.size < TASKS) await sleep(20);
const convergeMs = Date.now() - t0;
readyWatch.abort();
say(
  `operator: ${TASKS} new tasks created and all Ready in ${convergeMs} ms = ${(convergeMs / baselineMs).toFixed(2)}× the baseline (target ≤ 1.25×)`,
);

const verbs = ["get", "list", "watch", "create", "update", "apply", "patch", "delete"];
const counts = await Promise.all(verbs.map(requests));
say(
  `operator requests while converging: ${verbs.map((v, i) => `${v}=${counts[i]}`).join(" ")}; reconciles=${(await metric("controller_runtime_reconcile_total", 'result="requeue_after"')) + (await metric("controller_runtime_reconcile_total", 'result="success"'))}; conflicts/errors requeued=${await metric("workqueue_retries_total")}; CPU ${(await metric("process_cpu_seconds_total")).toFixed(1)} s; heap used ${((await metric("nodejs_heap_size_used_bytes")) / 1e6).toFixed(0)} MB`,
);

// 3. Idle: nothing changes, so nothing may be written or listed.
await sleep(3000);
const [w0, l0] = [await writes(), await requests("list")];
await sleep(10_000);
say(
  `idle 10 s: ${(await writes()) - w0} writes, ${(await requests("list")) - l0} lists (target 0 and 0)`,
);

// 4. Run completion → status latency, at TASKS tasks.
const runTasks = names.slice(0, RUNS);
const cronJobs = new Map<string, { uid: string; template: any }>();
for (const name of runTasks) {
  const cj = await client.get<{ metadata: { uid: string }; spec: { jobTemplate: any } }>(
    `/apis/batch/v1/namespaces/bench/cronjobs/${cronJobName(name)}`,
  );
  cronJobs.set(name, { uid: cj.metadata.uid, template: cj.spec.jobTemplate });
}
const completedAt = new Map<string, number>();
const recordedAt = new Map<string, number>();
const jobWatch = client.watch(
  "/apis/batch/v1/namespaces/bench/jobs",
  {},
  (type, job: any) => {
    if (
      type !== "DELETED" &&
      job.status?.conditions?.some((c: any) => c.type === "Complete" && c.status === "True")
    ) {
      const taskName = job.metadata.annotations?.["nightshift.dev/task-name"];
      if (taskName && !completedAt.has(taskName)) completedAt.set(taskName, Date.now());
    }
  },
  () => {},
);
const taskWatch = client.watch(
  "/apis/nightshift.dev/v1alpha1/namespaces/bench/backgroundtasks",
  {},
  (_type, t: any) => {
    if ((t.status?.runs?.total ?? 0) >= 1 && !recordedAt.has(t.metadata.name))
      recordedAt.set(t.metadata.name, Date.now());
  },
  () => {},
);
await sleep(1000);
const runsStarted = Date.now();
await pool(runTasks, CONCURRENCY, async (name) => {
  const index = runTasks.indexOf(name);
  await sleep(Math.max(0, runsStarted + (index * 1000) / RUN_RATE - Date.now()));
  const cj = cronJobs.get(name) as { uid: string; template: any };
  await client.create("/apis/batch/v1/namespaces/bench/jobs", {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: `${cronJobName(name)}-run`,
      namespace: "bench",
      labels: cj.template.metadata.labels,
      annotations: cj.template.metadata.annotations,
      ownerReferences: [
        {
          apiVersion: "batch/v1",
          kind: "CronJob",
          name: cronJobName(name),
          uid: cj.uid,
          controller: true,
        },
      ],
    },
    spec: cj.template.spec,
  });
});
const deadline = Date.now() + 300_000;
while (recordedAt.size < RUNS && Date.now() < deadline) await sleep(200);
const latencies = runTasks
  .flatMap((n) =>
    completedAt.has(n) && recordedAt.has(n)
      ? [Math.max(0, (recordedAt.get(n) as number) - (completedAt.get(n) as number))]
      : [],
  )
  .sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? Number.NaN;
say(
  `run completion → status, ${latencies.length}/${RUNS} runs started at ${RUN_RATE}/s with ${TASKS} tasks: p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${latencies.at(-1)} ms (target p99 < 1000 ms)`,
);
jobWatch.abort();
taskWatch.abort();

// 5. Memory. (BENCH_HEAP_SNAPSHOT=1 with BENCH_OPERATOR_NODE_FLAGS=--heapsnapshot-signal=SIGUSR2 writes a snapshot.)
if (process.env.BENCH_HEAP_SNAPSHOT) {
  process.kill(operator.pid ?? 0, "SIGUSR2");
  await sleep(15_000);
}
const mb = async (name: string) => ((await metric(name)) / 1e6).toFixed(0);
say(
  `operator heap used ${await mb("nodejs_heap_size_used_bytes")} MB, heap total ${await mb("nodejs_heap_size_total_bytes")} MB, external ${await mb("nodejs_external_memory_bytes")} MB`,
);
const rss = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
say(
  `operator RSS with ${TASKS} tasks, ${TASKS} CronJobs, ${RUNS} Jobs and pods: ${rss(operator.pid ?? 0).toFixed(0)} MB (target < 200 MB at 10,000)`,
);

// 6. Restart: catch up with no writes for unchanged tasks.
operator.kill("SIGTERM");
await new Promise((resolve) => operator.once("exit", resolve));
t0 = Date.now();
operator = startOperator();
await waitReady();
while (
  (await metric("controller_runtime_reconcile_total", 'result="requeue_after"')) +
    (await metric("controller_runtime_reconcile_total", 'result="success"')) <
  TASKS
)
  await sleep(100);
say(
  `restart with ${TASKS} tasks: caught up in ${Date.now() - t0} ms with ${await writes()} writes (target < 30 s, 0 writes)`,
);

operator.kill("SIGTERM");
await new Promise((resolve) => operator.once("exit", resolve));
client.close();
await plane.stop();
process.exit(0);
