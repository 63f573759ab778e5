// Benchmarks the operator against the local control plane, beside a plain
// client making the same writes and the Go controller-runtime peer
// (bench/go-peer), all in one run on one control plane, and prints every
// figure with its target (issue 12). No assertions: numbers. The plain client
// runs before and after each operator, and each operator is compared with the
// mean of the two: every run leaves the cluster fuller and the next slower.
//   make bench                         1,000 tasks
//   BENCH_TASKS=10000 make bench       the full size
//   BENCH_GO_PEER=0 make bench         without the Go peer
//   BENCH_HEAP_SNAPSHOT=1 make bench   also the operator's top heap retainers
//   BENCH_PRELOAD=0 make bench         the operator on glibc's malloc instead of jemalloc
//   BENCH_CGROUP=0 make bench          the operator outside a memory cgroup
// The operator runs as the image runs it: the bundle in dist/ (make build) with
// the image's Node flags (OPERATOR_NODE_FLAGS), unless BENCH_OPERATOR_NODE_FLAGS says otherwise,
// its environment, and its preloaded library (this machine's copy), in a memory cgroup
// limited as the chart limits its pod (where this machine lets root make one).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BackgroundTaskObject } from "../crds/backgroundtask.ts";
import { desiredCronJob } from "../operator/backgroundtask/desired-cronjob.ts";
import { cronJobName } from "../operator/backgroundtask/labels.ts";
import { computeStatus, type LiveCronJob } from "../operator/backgroundtask/status.ts";
import { validateTask } from "../operator/backgroundtask/validate.ts";
import { KubeClient } from "../operator/runtime/kube-client.ts";
import { hostLibrary } from "../scripts/images/build.ts";
import { imageEnv, images } from "../scripts/images/definitions.ts";
import { ControlPlane } from "../test/controlplane/controlplane.ts";
import { freePorts } from "../test/controlplane/processes.ts";
import { summarizeHeapSnapshot } from "./heap-summary.ts";
import { chartMemoryLimit, createMemoryCgroup } from "./memory-cgroup.ts";

const TASKS = Number(process.env.BENCH_TASKS ?? 1000);
const RUNS = Number(process.env.BENCH_RUNS ?? 300);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 8);
const GO_PEER = process.env.BENCH_GO_PEER !== "0";
/** What the operator image runs: its Node flags (between node and the script) and environment. */
const OPERATOR_NODE_FLAGS = images.operator.entrypoint.slice(1, -1);
const PRELOAD = process.env.BENCH_PRELOAD !== "0" ? hostLibrary(images.operator.preload) : "";
// The image's environment with this machine's copy of its library (an empty LD_PRELOAD loads none).
const OPERATOR_ENV: Record<string, string> = { ...imageEnv(images.operator), LD_PRELOAD: PRELOAD };
const nodeFlags =
  process.env.BENCH_OPERATOR_NODE_FLAGS?.split(" ").filter(Boolean) ?? OPERATOR_NODE_FLAGS;
const root = fileURLToPath(new URL("..", import.meta.url));
const CHART_MEMORY_LIMIT = chartMemoryLimit(`${root}charts/nightshift/values.yaml`);
const memoryCgroup =
  process.env.BENCH_CGROUP === "0"
    ? { unavailable: "BENCH_CGROUP=0" }
    : createMemoryCgroup("nightshift-bench", CHART_MEMORY_LIMIT, process.execPath, nodeFlags);
const cgroup = "wrap" in memoryCgroup ? memoryCgroup : undefined;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string) => console.log(`[bench] ${line}`);
const results: Array<{ figure: string; value: string; target: string; met?: boolean }> = [];
function report(figure: string, value: string, target = "", met?: boolean): void {
  results.push({ figure, value, target, met });
  say(
    `${figure}: ${value}${target ? ` (target ${target}${met === undefined ? "" : met ? ": met" : ": NOT met"})` : ""}`,
  );
}

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

/** N tasks split 1:4:5 over three namespaces, so scoped restarts see N/10, N/2 and N tasks. */
function layout(prefix: string): Array<{ ns: string; name: string }> {
  const sizes = [TASKS / 10, (TASKS * 4) / 10, TASKS / 2].map(Math.round);
  return sizes.flatMap((size, i) =>
    Array.from({ length: size }, (_, j) => ({ ns: `${prefix}-${i + 1}`, name: `task-${j}` })),
  );
}
const namespacesOf = (prefix: string) => [1, 2, 3].map((i) => `${prefix}-${i}`);

const taskManifest = (ns: string, name: string) => ({
  apiVersion: "nightshift.dev/v1alpha1",
  kind: "BackgroundTask",
  metadata: { name, namespace: ns },
  spec: {
    task: "http.request",
    schedule: "H H 1 1 *",
    params: { url: "https://example.com/hook" },
  },
});
const tasksPath = (ns: string) => `/apis/nightshift.dev/v1alpha1/namespaces/${ns}/backgroundtasks`;

say(
  `operator: node ${nodeFlags.join(" ")}, malloc ${PRELOAD ? `${PRELOAD} (${OPERATOR_ENV.MALLOC_CONF})` : "glibc"}`,
);
say(
  cgroup
    ? `operator memory: the chart's limit, ${cgroup.limit.text}, in ${cgroup.dir}; V8 heap limit there ${cgroup.v8HeapLimitMb.toFixed(0)} MB`
    : `operator memory: no limit (${"unavailable" in memoryCgroup ? memoryCgroup.unavailable : ""}); V8 sizes its heap from this machine's memory, so peaks run higher than in the pod`,
);
const plane = new ControlPlane({ log: (l) => say(`control plane: ${l}`) });
await plane.start();
plane.kubectl(["apply", "--server-side", "-f", `${root}crds/nightshift.dev_backgroundtasks.yaml`]);
plane.kubectl(["wait", "--for=condition=Established", "crd/backgroundtasks.nightshift.dev"]);
const client = KubeClient.fromKubeconfig(plane.kubeconfigPath);
const createNamespaces = async (names: string[]) => {
  for (const name of names) await client.create("/api/v1/namespaces", { metadata: { name } });
};
// The operators' namespaces exist before they start; each plain run makes its own.
for (const prefix of ["nightshift", "peer", "peer-strip"])
  await createNamespaces(namespacesOf(prefix));
// The operator reads a JSON kubeconfig, as in a cluster it reads no YAML at all.
const operatorKubeconfig = join(plane.workDir, "kubeconfig.json");
{
  const c = client.connection;
  const admin = (file: string) => join(plane.workDir, file);
  await import("node:fs").then((fs) =>
    fs.writeFileSync(
      operatorKubeconfig,
      JSON.stringify({
        clusters: [
          {
            name: "l",
            cluster: { server: c.server.toString(), "certificate-authority": admin("ca.crt") },
          },
        ],
        users: [
          {
            name: "u",
            user: { "client-certificate": admin("admin.crt"), "client-key": admin("admin.key") },
          },
        ],
        contexts: [{ name: "l", context: { cluster: "l", user: "u" } }],
        "current-context": "l",
      }),
    ),
  );
}

// 1. Baseline: the same writes the operator makes per new task, by a plain client.
const settings = {
  runnerImage: "nightshift/task-runner:bench",
  runnerImagePullPolicy: "IfNotPresent" as const,
  priorityClasses: {},
};
/** The plain client: the writes the operator makes per new task, and nothing else. */
async function plainClient({ ns, name }: { ns: string; name: string }): Promise<void> {
  const created = await client.create<BackgroundTaskObject>(tasksPath(ns), taskManifest(ns, name));
  const validation = validateTask(created, { exists: () => true, imageAllowed: () => true });
  if (!validation.valid) throw new Error(validation.message);
  const cronJob = desiredCronJob(created, validation, settings);
  const live = await client.apply<LiveCronJob>(
    `/apis/batch/v1/namespaces/${ns}/cronjobs/${cronJob.metadata.name}`,
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
  await client.mergePatch(`${tasksPath(ns)}/${name}/status`, {
    metadata: { resourceVersion: created.metadata.resourceVersion },
    status,
  });
}
/**
 * The plain client over one layout of new tasks in new namespaces, timed like the operators
 * (converge below). It runs before and after each operator (plain-a … plain-e), so each operator
 * is compared with plain runs on a cluster as full as its own (see ratioToPlain).
 */
async function plainRun(prefix: string): Promise<Convergence> {
  await createNamespaces(namespacesOf(prefix));
  return converge(prefix, { work: plainClient });
}
// Warm-up, untimed: the first few hundred writes on a new control plane run slow (300 tasks: the
// first plain run took 4.1 s, the next ones 1.9-2.3 s), which would fall on the first run only.
await createNamespaces(["warm-up"]);
await pool(
  Array.from({ length: 300 }, (_, i) => ({ ns: "warm-up", name: `task-${i}` })),
  WORKERS,
  plainClient,
);
const plainBefore = await plainRun("plain-a");
say(
  `plain client: ${TASKS} × (create task + apply CronJob + patch status), ${WORKERS} at a time, until seen Ready: ${plainBefore.ms} ms`,
);
reportConvergenceCpu("plain client", plainBefore);

// Helpers for one operator process (Nightshift or the Go peer).
interface Operator {
  child: ChildProcess;
  metricsPort: number;
  readyPort: number;
}
function statOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
}
/** CPU seconds (user + system) a process has used. */
function cpuSecondsOf(pid: number): number {
  const fields = statOf(pid);
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
function cpuSeconds(op: Operator): number {
  return cpuSecondsOf(op.child.pid ?? 0);
}
/** CPU seconds so far of every process on the machine's busy path: the control plane, this bench (the client and the watcher), the operator. */
function cpuByProcess(op?: Operator): Record<string, number> {
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(plane.pidsByName)) cpu[name] = cpuSecondsOf(pid);
  const own = process.cpuUsage();
  cpu.bench = (own.user + own.system) / 1e6;
  if (op) cpu.operator = cpuSeconds(op);
  return cpu;
}
/** How long one convergence took and the CPU seconds each process spent meanwhile. */
interface Convergence {
  ms: number;
  cpu: Record<string, number>;
}
/** Where the machine's CPU went while one convergence ran: the plain client's writes cost the same on every side, so the difference is what following the tasks costs. */
function reportConvergenceCpu(label: string, { ms, cpu }: Convergence): void {
  const spent = Object.entries(cpu)
    .filter(([, seconds]) => seconds >= 0.05)
    .sort((a, b) => b[1] - a[1]);
  const total = spent.reduce((sum, [, seconds]) => sum + seconds, 0);
  report(
    `CPU seconds while converging, ${label}`,
    `${spent.map(([name, seconds]) => `${name} ${seconds.toFixed(1)}`).join(", ")}; ${total.toFixed(1)} in all, ${(total / (ms / 1000)).toFixed(2)} cores busy`,
  );
}
/**
 * An operator's convergence against the plain client runs either side of it. The same plain
 * client run after an operator is slower than before it (3,000 tasks, one control plane: 19.8 s
 * then 22.2 s, 21.0 s then 22.0 s; the apiserver spent 14 % and 17 % more CPU on the same writes), as
 * every run leaves the cluster fuller; the mean of the two is the plain client on a cluster as
 * full as the operator's.
 */
function ratioToPlain(ms: number, before: Convergence, after: Convergence): number {
  return ms / ((before.ms + after.ms) / 2);
}
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const statusMb = (op: Operator, field: "VmRSS" | "VmHWM") =>
  Number(
    new RegExp(`${field}:\\s+(\\d+)`).exec(
      readFileSync(`/proc/${op.child.pid}/status`, "utf8"),
    )?.[1] ?? 0,
  ) / 1024;
const rssMb = (op: Operator) => statusMb(op, "VmRSS");
/** The process's highest RSS so far: what a memory limit must leave room for. */
const peakRssMb = (op: Operator) => statusMb(op, "VmHWM");
async function metricSum(op: Operator, name: string, labelRe = /.*/): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${op.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith("#")) continue;
    const series = line.slice(0, line.lastIndexOf(" "));
    if ((series === name || series.startsWith(`${name}{`)) && labelRe.test(series))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
const WRITE_VERBS = /verb="(create|update|apply|patch|delete)"/;
const nsWrites = (op: Operator) => metricSum(op, "nightshift_apiserver_requests", WRITE_VERBS);
const nsLists = (op: Operator) => metricSum(op, "nightshift_apiserver_requests", /verb="list"/);
const reconciles = (op: Operator) =>
  metricSum(op, "controller_runtime_reconcile_total", /result="(success|requeue_after)"/);
async function waitReady(op: Operator): Promise<void> {
  for (;;) {
    if (op.child.exitCode !== null) throw new Error("operator exited before it was ready");
    try {
      if ((await fetch(`http://127.0.0.1:${op.readyPort}/readyz`)).ok) return;
    } catch {}
    await sleep(100);
  }
}
async function stop(op: Operator): Promise<void> {
  if (op.child.exitCode !== null) return;
  const exited = new Promise((resolve) => op.child.once("exit", resolve));
  op.child.kill("SIGTERM");
  await exited;
}
async function startNightshift(namespaces: string[], extraFlags: string[] = []): Promise<Operator> {
  const [metricsPort] = await freePorts(1);
  const command = [
    process.execPath,
    ...nodeFlags,
    ...extraFlags,
    `${root}dist/operator/main.js`,
    `--namespaces=${namespaces.join(",")}`,
    `--metrics-address=127.0.0.1:${metricsPort}`,
    "--leader-elect=false",
    `--workers=${WORKERS}`,
    "--runner-image=nightshift/task-runner:bench",
    "--log-level=warn",
  ];
  const child = spawn(
    "setpriv",
    ["--pdeathsig", "KILL", "--", ...(cgroup ? cgroup.wrap(command) : command)],
    {
      env: { ...process.env, ...OPERATOR_ENV, KUBECONFIG: operatorKubeconfig },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const op = { child, metricsPort: metricsPort ?? 0, readyPort: metricsPort ?? 0 };
  await waitReady(op);
  // ld.so only warns when it cannot preload: a figure measured on the wrong malloc must not pass.
  if (PRELOAD && !readFileSync(`/proc/${child.pid}/maps`, "utf8").includes(PRELOAD))
    throw new Error(`the operator runs without ${PRELOAD}`);
  return op;
}
async function startPeer(binary: string, namespaces: string[], strip: boolean): Promise<Operator> {
  const [metricsPort, readyPort] = await freePorts(2);
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      binary,
      `--namespaces=${namespaces.join(",")}`,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      `--health-probe-bind-address=127.0.0.1:${readyPort}`,
      `--workers=${WORKERS}`,
      "--runner-image=nightshift/task-runner:bench",
      ...(strip ? ["--strip-managed-fields"] : []),
    ],
    {
      env: { ...process.env, KUBECONFIG: plane.kubeconfigPath },
      stdio: ["ignore", "ignore", "ignore"],
    },
  );
  const op = { child, metricsPort: metricsPort ?? 0, readyPort: readyPort ?? 0 };
  await waitReady(op);
  return op;
}

/**
 * A watch that resumes from its last resourceVersion whenever the apiserver ends the stream,
 * and starts afresh (the apiserver replays the current state as ADDED events) when that
 * version is gone (410): every consumer here keeps state that such a replay cannot spoil.
 */
function keepWatching(
  path: string,
  onEvent: (type: string, object: any) => void,
): { abort(): void } {
  let stopped = false;
  let resourceVersion = "";
  let current: AbortController | undefined;
  const start = () => {
    if (stopped) return;
    current = client.watch(
      path,
      resourceVersion
        ? { resourceVersion, allowWatchBookmarks: "true" }
        : { allowWatchBookmarks: "true" },
      (type, object) => {
        if (type === "ERROR") {
          resourceVersion = "";
          return;
        }
        if (object.metadata?.resourceVersion) resourceVersion = object.metadata.resourceVersion;
        if (type !== "BOOKMARK") onEvent(type, object);
      },
      () => setTimeout(start, 100),
    );
  };
  start();
  return {
    abort() {
      stopped = true;
      current?.abort();
    },
  };
}

/**
 * Runs `work` (by default: create the task, for an operator to converge) over the layout's
 * tasks W at a time; resolves, in ms, when a watcher has seen every one Ready at its generation.
 * The plain client is timed the same way, so the watcher's cost and latency fall on both sides.
 */
async function converge(
  prefix: string,
  {
    work,
    op,
  }: { work?: (task: { ns: string; name: string }) => Promise<unknown>; op?: Operator } = {},
): Promise<Convergence> {
  const tasks = layout(prefix);
  const namespaces = new Set(namespacesOf(prefix));
  const ready = new Set<string>();
  const watch = keepWatching("/apis/nightshift.dev/v1alpha1/backgroundtasks", (_type, t: any) => {
    if (
      namespaces.has(t.metadata.namespace) &&
      t.status?.observedGeneration === t.metadata.generation &&
      t.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True")
    )
      ready.add(`${t.metadata.namespace}/${t.metadata.name}`);
  });
  await sleep(500);
  const cpuBefore = cpuByProcess(op);
  const started = Date.now();
  await pool(
    tasks,
    WORKERS,
    work ?? (({ ns, name }) => client.create(tasksPath(ns), taskManifest(ns, name))),
  );
  while (ready.size < tasks.length) await sleep(20);
  const ms = Date.now() - started;
  const cpuAfter = cpuByProcess(op);
  watch.abort();
  const cpu = Object.fromEntries(
    Object.entries(cpuAfter).map(([name, seconds]) => [name, seconds - (cpuBefore[name] ?? 0)]),
  );
  return { ms, cpu };
}

// 2. Nightshift converging N new tasks.
const nsNamespaces = namespacesOf("nightshift");
// RSS is read after SETTLE_MS of quiet: V8's memory reducer returns the garbage of startup and bursts after ~10-20 s.
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 30_000);
let operator = await startNightshift(nsNamespaces);
await sleep(SETTLE_MS);
const idleRss = rssMb(operator);
report("Nightshift RSS idle, no tasks", `${idleRss.toFixed(0)} MB`, "≤ 60 MB", idleRss <= 60);
const nsConvergence = await converge("nightshift", { op: operator });
const nsConvergeMs = nsConvergence.ms;
const nsConvergeCpu = cpuSeconds(operator);
// The operator stays up, idle: its namespaces see nothing while the plain client runs again.
const plainAfter = await plainRun("plain-b");
const nsRatio = ratioToPlain(nsConvergeMs, plainBefore, plainAfter);
report(
  `convergence of ${TASKS} new tasks`,
  `Nightshift ${seconds(nsConvergeMs)}; plain client ${seconds(plainBefore.ms)} before it, ${seconds(plainAfter.ms)} after it = ${nsRatio.toFixed(3)}× their mean (${(nsConvergeMs / plainBefore.ms).toFixed(2)}× the run before it alone)`,
  "≤ 1.1× plain client",
  nsRatio <= 1.1,
);
reportConvergenceCpu("Nightshift", nsConvergence);
reportConvergenceCpu("plain client after Nightshift", plainAfter);
const convergeWrites = await nsWrites(operator);
say(
  `Nightshift writes while converging: ${convergeWrites} (${(convergeWrites / TASKS).toFixed(2)} per task)`,
);

// 3. Idle: nothing changes, so nothing may be written or listed.
await sleep(3000);
const [w0, l0] = [await nsWrites(operator), await nsLists(operator)];
await sleep(SETTLE_MS);
const [idleWrites, idleLists] = [(await nsWrites(operator)) - w0, (await nsLists(operator)) - l0];
report(
  `idle ${SETTLE_MS / 1000} s`,
  `${idleWrites} writes, ${idleLists} lists`,
  "0 and 0",
  idleWrites === 0 && idleLists === 0,
);
const nsCpu = cpuSeconds(operator);
const nsRssIdle = rssMb(operator);

// 4. Burst: RUNS runs of different tasks finishing in the same second.
{
  const runTasks = layout("nightshift").slice(0, RUNS);
  const templates = new Map<string, { uid: string; template: any }>();
  await pool(runTasks, WORKERS, async ({ ns, name }) => {
    const cj = await client.get<{ metadata: { uid: string }; spec: { jobTemplate: any } }>(
      `/apis/batch/v1/namespaces/${ns}/cronjobs/${cronJobName(name)}`,
    );
    templates.set(`${ns}/${name}`, { uid: cj.metadata.uid, template: cj.spec.jobTemplate });
  });
  const completedAt = new Map<string, number>();
  const recordedAt = new Map<string, number>();
  const runNamespaces = new Set(runTasks.map((t) => t.ns));
  const burstTasks = new Set(runTasks.map(({ ns, name }) => `${ns}/${name}`));
  let jobEvents = 0;
  let statusWrites = 0;
  const jobWatch = keepWatching("/apis/batch/v1/jobs", (type, job: any) => {
    jobEvents++;
    if (!runNamespaces.has(job.metadata.namespace) || type === "DELETED") return;
    if (job.status?.conditions?.some((c: any) => c.type === "Complete" && c.status === "True")) {
      const key = `${job.metadata.namespace}/${job.metadata.annotations?.["nightshift.dev/task-name"]}`;
      if (!completedAt.has(key)) completedAt.set(key, Date.now());
    }
  });
  const taskWatch = keepWatching(
    "/apis/nightshift.dev/v1alpha1/backgroundtasks",
    (type, t: any) => {
      const key = `${t.metadata.namespace}/${t.metadata.name}`;
      if (type === "MODIFIED" && burstTasks.has(key)) statusWrites++; // only the operator writes them now
      if ((t.status?.runs?.total ?? 0) >= 1 && !recordedAt.has(key))
        recordedAt.set(key, Date.now());
    },
  );
  await sleep(1000);
  const verbs = ["create", "patch", "apply", "update", "delete"] as const;
  const byVerb = async (): Promise<Record<(typeof verbs)[number], number>> =>
    Object.fromEntries(
      await Promise.all(
        verbs.map(
          async (v) =>
            [
              v,
              await metricSum(operator, "nightshift_apiserver_requests", new RegExp(`verb="${v}"`)),
            ] as const,
        ),
      ),
    ) as Record<(typeof verbs)[number], number>;
  const verbsBefore = await byVerb();
  // Every pod completes at one instant (kwok reads an RFC 3339 time in the delay annotation as
  // "at"), far enough ahead that all RUNS pods are running by then.
  const finishAt = new Date(Date.now() + Math.max(30_000, RUNS * 100)).toISOString();
  await pool(runTasks, WORKERS * 4, async ({ ns, name }) => {
    const cj = templates.get(`${ns}/${name}`) as { uid: string; template: any };
    const spec = structuredClone(cj.template.spec);
    spec.template.metadata = {
      ...spec.template.metadata,
      annotations: {
        ...spec.template.metadata?.annotations,
        "pod-complete.stage.kwok.x-k8s.io/delay": finishAt,
      },
    };
    await client.create(`/apis/batch/v1/namespaces/${ns}/jobs`, {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata: {
        name: `${cronJobName(name)}-burst`,
        namespace: ns,
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
      spec,
    });
  });
  const deadline = Date.now() + 300_000;
  while (recordedAt.size < RUNS && Date.now() < deadline) await sleep(200);
  await sleep(3000); // the releases after the recording status write
  const verbsAfter = await byVerb();
  const spent = Object.fromEntries(verbs.map((v) => [v, verbsAfter[v] - verbsBefore[v]])) as Record<
    (typeof verbs)[number],
    number
  >;
  const runWrites = Object.values(spent).reduce((a, b) => a + b, 0);
  say(
    `burst: ${jobEvents} Job events, ${completedAt.size} completions, ${recordedAt.size} recorded`,
  );
  const latencies = runTasks
    .map(({ ns, name }) => `${ns}/${name}`)
    .flatMap((k) =>
      completedAt.has(k) && recordedAt.has(k)
        ? [Math.max(0, (recordedAt.get(k) as number) - (completedAt.get(k) as number))]
        : [],
    )
    .sort((a, b) => a - b);
  const completions = [...completedAt.values()].sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ??
    Number.NaN;
  report(
    `burst: ${RUNS} runs finishing within ${(((completions.at(-1) ?? 0) - (completions[0] ?? 0)) / 1000).toFixed(1)} s, completion → status (${latencies.length} measured)`,
    `p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${latencies.at(-1)} ms`,
    "p99 ≤ 1000 ms",
    pct(99) <= 1000,
  );
  report(
    "API writes per run",
    `${(runWrites / RUNS).toFixed(2)}: ${(statusWrites / RUNS).toFixed(2)} task status, ${((spent.patch - statusWrites) / RUNS).toFixed(2)} Job patches (hold, release), ${(spent.delete / RUNS).toFixed(2)} deletes, ${(spent.create / RUNS).toFixed(2)} creates (events)`,
  );
  jobWatch.abort();
  taskWatch.abort();
}

// 5. Memory with N tasks, their CronJobs and a Job history; heap retainers on request.
await sleep(SETTLE_MS);
const nsRssFull = rssMb(operator);
const nsPeakConverging = peakRssMb(operator);
const heapUsed = (await metricSum(operator, "nodejs_heap_size_used_bytes")) / 1e6;
say(
  `Nightshift with ${TASKS} tasks: RSS ${nsRssFull.toFixed(0)} MB, JS heap used ${heapUsed.toFixed(0)} MB`,
);
if (process.env.BENCH_HEAP_SNAPSHOT) {
  const dir = join(tmpdir(), `nightshift-heap-${process.pid}`);
  await stop(operator);
  operator = await startNightshift(nsNamespaces, [
    `--heapsnapshot-signal=SIGUSR2`,
    `--diagnostic-dir=${dir}`,
  ]);
  while ((await reconciles(operator)) < TASKS) await sleep(200);
  await sleep(3000);
  operator.child.kill("SIGUSR2");
  let file: string | undefined;
  for (let i = 0; i < 300 && !file; i++) {
    await sleep(1000);
    const found = existsSync(dir)
      ? readdirSync(dir).find((f) => f.endsWith(".heapsnapshot"))
      : undefined;
    // Written once its size stops changing.
    if (found) {
      const size = () => readFileSync(join(dir, found)).length;
      const a = size();
      await sleep(2000);
      if (a === size() && a > 0) file = join(dir, found);
    }
  }
  if (file) {
    say(`top heap retainers (self size by constructor) with ${TASKS} tasks:`);
    for (const row of summarizeHeapSnapshot(readFileSync(file, "utf8"), 12))
      say(
        `  ${(row.bytes / 1e6).toFixed(1).padStart(6)} MB ${String(row.count).padStart(8)} × ${row.name}`,
      );
    rmSync(dir, { recursive: true, force: true });
  }
}

// 6. Restarts: scoped to N/10, N/2 and N tasks, each caught up; bytes per task fitted.
await stop(operator);
const points: Array<{ tasks: number; rss: number }> = [];
let restartMs = 0;
let restartPeak = 0;
let restartWrites = 0;
for (const scope of [1, 2, 3]) {
  const namespaces = nsNamespaces.slice(0, scope);
  const tasks = layout("nightshift").filter((t) => namespaces.includes(t.ns)).length;
  const t0 = Date.now();
  operator = await startNightshift(namespaces);
  while ((await reconciles(operator)) < tasks) await sleep(50);
  if (scope === 3) {
    restartMs = Date.now() - t0;
    restartPeak = peakRssMb(operator);
    await sleep(3000);
    restartWrites = await nsWrites(operator);
  }
  await sleep(SETTLE_MS);
  points.push({ tasks, rss: rssMb(operator) });
  if (scope < 3) await stop(operator);
}
report(
  `restart with ${TASKS} tasks`,
  `caught up in ${(restartMs / 1000).toFixed(1)} s with ${restartWrites} writes`,
  "≤ 10 s, 0 writes",
  restartMs <= 10_000 && restartWrites === 0,
);
report(
  "Nightshift peak RSS (VmHWM)",
  `${nsPeakConverging.toFixed(0)} MB converging ${TASKS} new tasks and the burst, ${restartPeak.toFixed(0)} MB catching up after a restart with ${TASKS}`,
  `under the chart's ${CHART_MEMORY_LIMIT.text} limit`,
  Math.max(nsPeakConverging, restartPeak) * 2 ** 20 < CHART_MEMORY_LIMIT.bytes,
);
const fit = (() => {
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.tasks, 0) / n;
  const my = points.reduce((s, p) => s + p.rss, 0) / n;
  const slope =
    points.reduce((s, p) => s + (p.tasks - mx) * (p.rss - my), 0) /
    points.reduce((s, p) => s + (p.tasks - mx) ** 2, 0);
  return { bytesPerTask: slope * 1024 * 1024, interceptMb: my - slope * mx };
})();
for (const p of points) {
  const target = p.tasks <= 1000 ? 100 : p.tasks <= 10_000 ? 200 : undefined;
  report(
    `Nightshift RSS, ${p.tasks} tasks (after restart)`,
    `${p.rss.toFixed(0)} MB`,
    target ? `≤ ${target} MB` : "",
    target ? p.rss <= target : undefined,
  );
}
report(
  "memory per task (least squares over the restarts)",
  `${(fit.bytesPerTask / 1024).toFixed(1)} KiB per task + ${fit.interceptMb.toFixed(0)} MB`,
);
report(
  "Nightshift RSS after convergence, burst and idle",
  `${nsRssFull.toFixed(0)} MB (idle right after convergence ${nsRssIdle.toFixed(0)} MB)`,
);
report(
  "Nightshift CPU seconds",
  `${nsConvergeCpu.toFixed(1)} s converging, ${nsCpu.toFixed(1)} s until idle end`,
);
await stop(operator);

// 7. The Go controller-runtime peer, same control plane, same run.
if (GO_PEER) {
  const binary = execFileSync("bash", [`${root}bench/build-go-peer.sh`], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  })
    .trim()
    .split("\n")
    .at(-1) as string;
  let plainPrevious = await plainRun("plain-c");
  for (const strip of [false, true]) {
    const prefix = strip ? "peer-strip" : "peer";
    const label = strip ? "Go peer, managedFields stripped" : "Go peer";
    const peer = await startPeer(binary, namespacesOf(prefix), strip);
    const convergence = await converge(prefix, { op: peer });
    const { ms } = convergence;
    const cpuConverged = cpuSeconds(peer);
    await sleep(3000 + SETTLE_MS);
    const cpu = cpuSeconds(peer);
    const rss = rssMb(peer);
    const heap = (await metricSum(peer, "go_memstats_heap_inuse_bytes")) / 1e6;
    await stop(peer);
    const plainNext = await plainRun(strip ? "plain-e" : "plain-d");
    const peerRatio = ratioToPlain(ms, plainPrevious, plainNext);
    report(
      `${label}: convergence of ${TASKS} new tasks`,
      `${seconds(ms)}; plain client ${seconds(plainPrevious.ms)} before it, ${seconds(plainNext.ms)} after it = ${peerRatio.toFixed(3)}× their mean (Nightshift ${nsRatio.toFixed(3)}×; ${(nsConvergeMs / ms).toFixed(2)}× the peer's seconds)`,
      "Nightshift no slower",
      nsRatio <= peerRatio,
    );
    reportConvergenceCpu(label, convergence);
    report(
      `${label}: CPU seconds`,
      `${cpuConverged.toFixed(1)} s converging, ${cpu.toFixed(1)} s until idle end (Nightshift ${nsCpu.toFixed(1)} s)`,
      "Nightshift ≤ peer",
      nsCpu <= cpu,
    );
    report(
      `${label}: RSS idle with ${TASKS} tasks`,
      `${rss.toFixed(0)} MB, Go heap in use ${heap.toFixed(0)} MB (Nightshift ${nsRssIdle.toFixed(0)} MB)`,
      strip ? "Nightshift ≤ stripped peer" : "",
      strip ? nsRssIdle <= rss : undefined,
    );
    plainPrevious = plainNext;
  }
}

say(
  `summary, ${TASKS} tasks, ${new Date().toISOString()}, ${execFileSync("nproc", { encoding: "utf8" }).trim()} CPUs:`,
);
console.log("| figure | value | target |");
console.log("| --- | --- | --- |");
for (const r of results)
  console.log(
    `| ${r.figure} | ${r.value} | ${r.target}${r.met === undefined ? "" : r.met ? " ✓" : " ✗"} |`,
  );

client.close();
await plane.stop();
cgroup?.remove();
process.exit(0);
