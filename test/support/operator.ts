// Runs the real operator as a child process against the shared control
// plane, the way `make run` does, and reads its /metrics.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, inject } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { createNamespace, eventually } from "./cluster.ts";

const MAIN = fileURLToPath(new URL("../../operator/main.ts", import.meta.url));

export interface OperatorOptions {
  namespaces: string[];
  leaderElect?: boolean;
  leaderElectionId?: string;
  leaderElectionNamespace?: string;
  identity?: string;
  runnerImage?: string;
  priorityClasses?: string;
  workloadPriorityClasses?: string;
  startRate?: number;
  startBurst?: number;
  queueSaturation?: number;
  workers?: number;
  /** Kubeconfig to run with instead of the admin one, e.g. a ServiceAccount's token. */
  kubeconfig?: string;
  /** More flags, e.g. --allowed-image-prefixes=…. */
  extraArgs?: string[];
}

export class OperatorProcess {
  readonly child: ChildProcess;
  readonly port: number;
  output = "";

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
    child.stdout?.on("data", (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      this.output += chunk.toString();
    });
  }

  static async start(options: OperatorOptions): Promise<OperatorProcess> {
    const [port] = await freePorts(1);
    const args = [
      MAIN,
      `--namespaces=${options.namespaces.join(",")}`,
      `--metrics-address=127.0.0.1:${port}`,
      `--leader-elect=${options.leaderElect ?? false}`,
      `--runner-image=${options.runnerImage ?? "registry.example/nightshift/task-runner:test"}`,
      `--workers=${options.workers ?? 4}`,
      "--log-level=debug",
    ];
    if (options.leaderElectionId) args.push(`--leader-election-id=${options.leaderElectionId}`);
    if (options.leaderElectionNamespace)
      args.push(`--leader-election-namespace=${options.leaderElectionNamespace}`);
    if (options.identity) args.push(`--identity=${options.identity}`);
    if (options.priorityClasses) args.push(`--priority-classes=${options.priorityClasses}`);
    if (options.workloadPriorityClasses)
      args.push(`--workload-priority-classes=${options.workloadPriorityClasses}`);
    if (options.startRate) args.push(`--start-rate=${options.startRate}`);
    if (options.startBurst) args.push(`--start-burst=${options.startBurst}`);
    if (options.queueSaturation) args.push(`--queue-saturation=${options.queueSaturation}`);
    args.push(...(options.extraArgs ?? []));
    // setpriv: the operator dies with the test worker, whatever happens to it.
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", process.execPath, ...args], {
      env: { ...process.env, KUBECONFIG: options.kubeconfig ?? inject("kubeconfigPath") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const operator = new OperatorProcess(child, port ?? 0);
    await eventually(
      async () => ((await operator.http("/readyz")).status === 200 ? true : undefined),
      {
        what: `operator readiness\n${operator.output.slice(-2000)}`,
        // A cold Node start plus the first lists take seconds; on a loaded 2-core machine, more.
        timeoutMs: 120_000,
      },
    );
    return operator;
  }

  async http(path: string): Promise<{ status: number; body: string }> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}${path}`);
      return { status: res.status, body: await res.text() };
    } catch {
      return { status: 0, body: "" };
    }
  }

  /** Value of one Prometheus sample, e.g. metric("nightshift_apiserver_requests", {verb: "apply"}). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { body } = await this.http("/metrics");
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of body.split("\n")) {
      if (!line.startsWith(name)) continue;
      const [series, value] = line.split(/ (?=[^ ]+$)/);
      if (!series || series.split("{")[0] !== name) continue;
      if (want.every((w) => series.includes(w))) return Number(value);
    }
    return Number.NaN;
  }

  /** Sum of all samples of a metric whose labels include `labels`. */
  async metricSum(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { body } = await this.http("/metrics");
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    let total = 0;
    for (const line of body.split("\n")) {
      const [series, value] = line.split(/ (?=[^ ]+$)/);
      if (!series || series.split("{")[0] !== name) continue;
      if (want.every((w) => series.includes(w))) total += Number(value);
    }
    return total;
  }

  /**
   * Resolves once the operator has reconciled at least `reconciles` times
   * and nothing is queued or in flight: everything it was told about so far
   * has been looked at. Negative checks wait for this instead of sleeping.
   */
  async idle(reconciles = 1): Promise<void> {
    await eventually(
      async () =>
        (await this.metricSum("controller_runtime_reconcile_total")) >= reconciles &&
        (await this.metricSum("workqueue_depth")) === 0 &&
        (await this.metricSum("controller_runtime_active_workers")) === 0
          ? true
          : undefined,
      { what: "operator to be idle", timeoutMs: 60_000 },
    );
  }

  /** Write requests (create, update, apply, patch, delete) made by the operator so far, leases excluded. */
  async writes(): Promise<number> {
    let total = 0;
    for (const verb of ["create", "update", "apply", "patch", "delete"])
      total += await this.metric("nightshift_apiserver_requests", { verb });
    return total;
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.exited) return this.child.exitCode;
    const done = new Promise<number | null>((resolve) =>
      this.child.once("exit", (code) => resolve(code)),
    );
    this.child.kill(signal);
    return done;
  }
}

/**
 * One operator for a describe block, watching a namespace of its own; its
 * output is printed when a test fails. `restart()` stops and starts it again.
 */
export function operatorForSuite(
  prefix: string,
  options: Omit<OperatorOptions, "namespaces"> = {},
) {
  const suite = {
    ns: "",
    operator: undefined as unknown as OperatorProcess,
    async restart(): Promise<void> {
      await suite.operator.stop();
      suite.operator = await OperatorProcess.start({ ...options, namespaces: [suite.ns] });
    },
  };
  beforeAll(async () => {
    suite.ns = await createNamespace(prefix);
    suite.operator = await OperatorProcess.start({ ...options, namespaces: [suite.ns] });
  });
  afterAll(async () => {
    await suite.operator?.stop();
  });
  afterEach((context) => {
    if (context.task.result?.state === "fail")
      console.log(`operator output:\n${suite.operator.output.slice(-4000)}`);
  });
  return suite;
}
