// kube-state-metrics with Nightshift's CustomResourceState config and a real
// Prometheus (Debian's) scraping it, the operator(s) and, where one exists, a
// kubelet, with Nightshift's rules loaded: for the tests and for `make demo`.
// Both run as children on free loopback ports and die with this process.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { freePorts, type ManagedProcess, startProcess, stopProcess } from "./processes.ts";

const chartFiles = fileURLToPath(new URL("../../charts/nightshift/files/", import.meta.url));
export const KSM_CONFIG = join(chartFiles, "kube-state-metrics-config.yaml");
export const RULES_FILE = join(chartFiles, "prometheus-rules.yaml");
export const DASHBOARD_FILE = join(chartFiles, "dashboards", "nightshift.json");

/** Labels of run pods and Jobs that kube-state-metrics copies into kube_pod_labels/kube_job_labels. */
export const KSM_LABELS_ALLOWLIST =
  "pods=[nightshift.dev/task,nightshift.dev/task-type],jobs=[nightshift.dev/task]";

export interface MonitoringOptions {
  kubeconfigPath: string;
  /** Folder with the kube-state-metrics binary (build-binaries.sh's output). */
  binDir: string;
  /** host:port of operator metrics endpoints to scrape; more can be added later with addOperator. */
  operators?: string[];
  /** Nodes whose kubelet's cAdvisor metrics Prometheus scrapes through the API server's node proxy (real nodes only). */
  kubeletNodes?: string[];
  /** Scrape and rule evaluation interval; short in tests. */
  interval?: string;
  /** Rewrites every alert's `for:` (tests use "0s" so alerts fire on the first evaluation). */
  alertFor?: string;
  workDir?: string;
  log?: (line: string) => void;
}

export class Monitoring {
  readonly prometheusUrl: string;
  readonly ksmUrl: string;
  private readonly processes: ManagedProcess[];
  private readonly workDir: string;
  private readonly ownsWorkDir: boolean;
  private readonly operatorTargets: string[];

  private constructor(
    prometheusUrl: string,
    ksmUrl: string,
    processes: ManagedProcess[],
    workDir: string,
    ownsWorkDir: boolean,
    operators: string[],
  ) {
    this.prometheusUrl = prometheusUrl;
    this.ksmUrl = ksmUrl;
    this.processes = processes;
    this.workDir = workDir;
    this.ownsWorkDir = ownsWorkDir;
    this.operatorTargets = operators;
  }

  static async start(options: MonitoringOptions): Promise<Monitoring> {
    const log = options.log ?? (() => {});
    const ownsWorkDir = !options.workDir;
    const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), "nightshift-monitoring-"));
    mkdirSync(join(workDir, "logs"), { recursive: true });
    const interval = options.interval ?? "15s";
    const [ksmPort, ksmTelemetryPort, promPort] = await freePorts(3);
    const processes: ManagedProcess[] = [];
    const prometheusBin = findPrometheus();
    try {
      log("starting kube-state-metrics");
      processes.push(
        startProcess(
          "kube-state-metrics",
          join(options.binDir, "kube-state-metrics"),
          [
            `--kubeconfig=${options.kubeconfigPath}`,
            "--host=127.0.0.1",
            `--port=${ksmPort}`,
            "--telemetry-host=127.0.0.1",
            `--telemetry-port=${ksmTelemetryPort}`,
            `--custom-resource-state-config-file=${KSM_CONFIG}`,
            // What the dashboard and rules join on; the default set works as well, only slower here.
            "--resources=cronjobs,jobs,pods",
            `--metric-labels-allowlist=${KSM_LABELS_ALLOWLIST}`,
          ],
          join(workDir, "logs", "kube-state-metrics.log"),
        ),
      );
      const ksmUrl = `http://127.0.0.1:${ksmPort}`;

      const rules = parse(readFileSync(RULES_FILE, "utf8")) as {
        groups: Array<{ rules: Array<{ alert?: string; for?: string }> }>;
      };
      if (options.alertFor !== undefined)
        for (const group of rules.groups)
          for (const rule of group.rules) if (rule.alert) rule.for = options.alertFor;
      writeFileSync(join(workDir, "rules.yaml"), stringify(rules));
      const monitoring = new Monitoring(
        `http://127.0.0.1:${promPort}`,
        ksmUrl,
        processes,
        workDir,
        ownsWorkDir,
        [...(options.operators ?? [])],
      );
      monitoring.writeTargets();
      writeFileSync(
        join(workDir, "prometheus.yml"),
        stringify({
          global: { scrape_interval: interval, evaluation_interval: interval },
          rule_files: [join(workDir, "rules.yaml")],
          scrape_configs: [
            {
              job_name: "kube-state-metrics",
              honor_labels: true,
              static_configs: [{ targets: [`127.0.0.1:${ksmPort}`] }],
            },
            {
              job_name: "nightshift-operator",
              honor_labels: true,
              file_sd_configs: [
                { files: [join(workDir, "operators.json")], refresh_interval: "1s" },
              ],
            },
            ...(options.kubeletNodes?.length
              ? [kubeletScrapeConfig(options.kubeconfigPath, options.kubeletNodes)]
              : []),
          ],
        }),
      );
      log("starting prometheus");
      processes.push(
        startProcess(
          "prometheus",
          prometheusBin,
          [
            `--config.file=${join(workDir, "prometheus.yml")}`,
            `--storage.tsdb.path=${join(workDir, "tsdb")}`,
            `--web.listen-address=127.0.0.1:${promPort}`,
            "--web.enable-lifecycle",
            "--log.level=warn",
          ],
          join(workDir, "logs", "prometheus.log"),
        ),
      );
      await monitoring.waitFor("kube-state-metrics", async () => {
        const res = await fetch(`${ksmUrl}/metrics`);
        return res.ok;
      });
      await monitoring.waitFor("prometheus", async () => {
        const res = await fetch(`${monitoring.prometheusUrl}/-/ready`);
        return res.ok;
      });
      return monitoring;
    } catch (error) {
      for (const p of processes.reverse()) await stopProcess(p);
      throw error;
    }
  }

  /** Adds an operator's metrics endpoint (host:port) to what Prometheus scrapes. */
  addOperator(target: string): void {
    if (!this.operatorTargets.includes(target)) this.operatorTargets.push(target);
    this.writeTargets();
  }

  /** Result of an instant PromQL query through Prometheus's HTTP API. */
  async query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const res = await fetch(`${this.prometheusUrl}/api/v1/query`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ query: expr }),
    });
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: {
        resultType: string;
        result: Array<{ metric: Record<string, string>; value: [number, string] }>;
      };
    };
    if (body.status !== "success") throw new Error(`query ${expr} failed: ${body.error}`);
    const result = body.data?.result ?? [];
    if (body.data?.resultType === "scalar") {
      const value = result as unknown as [number, string];
      return [{ metric: {}, value: Number(value[1]) }];
    }
    return result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** Alerts as Prometheus reports them (pending and firing). */
  async alerts(): Promise<
    Array<{ labels: Record<string, string>; state: string; annotations: Record<string, string> }>
  > {
    const res = await fetch(`${this.prometheusUrl}/api/v1/alerts`);
    const body = (await res.json()) as { data: { alerts: never[] } };
    return body.data.alerts;
  }

  /** Rule groups Prometheus loaded, with each rule's health. */
  async rules(): Promise<
    Array<{
      name: string;
      rules: Array<{ name: string; health: string; type: string; lastError?: string }>;
    }>
  > {
    const res = await fetch(`${this.prometheusUrl}/api/v1/rules`);
    const body = (await res.json()) as { data: { groups: never[] } };
    return body.data.groups;
  }

  /** Scrape targets and their health. */
  async targets(): Promise<
    Array<{ job: string; health: string; lastError: string; scrapeUrl: string }>
  > {
    const res = await fetch(`${this.prometheusUrl}/api/v1/targets`);
    const body = (await res.json()) as {
      data: {
        activeTargets: Array<{
          labels: { job: string };
          health: string;
          lastError: string;
          scrapeUrl: string;
        }>;
      };
    };
    return body.data.activeTargets.map((t) => ({
      job: t.labels.job,
      health: t.health,
      lastError: t.lastError,
      scrapeUrl: t.scrapeUrl,
    }));
  }

  logs(name: "prometheus" | "kube-state-metrics"): string {
    try {
      return readFileSync(join(this.workDir, "logs", `${name}.log`), "utf8");
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    for (const p of [...this.processes].reverse()) await stopProcess(p);
    this.processes.length = 0;
    if (this.ownsWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  private writeTargets(): void {
    writeFileSync(
      join(this.workDir, "operators.json"),
      JSON.stringify(this.operatorTargets.length ? [{ targets: this.operatorTargets }] : []),
    );
  }

  private async waitFor(
    what: string,
    ready: () => Promise<boolean>,
    timeoutMs = 60_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const dead = this.processes.find(
        (p) => p.child.exitCode !== null || p.child.signalCode !== null,
      );
      if (dead)
        throw new Error(
          `${dead.name} exited while waiting for ${what}:\n${readTail(dead.logFile)}`,
        );
      if (await ready().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`timed out waiting for ${what}; logs in ${join(this.workDir, "logs")}`);
  }
}

/**
 * cAdvisor through the API server (/api/v1/nodes/NODE/proxy/metrics/cadvisor), authenticated
 * with the kubeconfig's client certificate: the kubelet itself accepts no anonymous scrapes.
 */
function kubeletScrapeConfig(kubeconfigPath: string, nodes: string[]): Record<string, unknown> {
  const kubeconfig = parse(readFileSync(kubeconfigPath, "utf8")) as {
    clusters: Array<{ cluster: { server: string; "certificate-authority": string } }>;
    users: Array<{ user: { "client-certificate": string; "client-key": string } }>;
  };
  const cluster = kubeconfig.clusters[0]?.cluster;
  const user = kubeconfig.users[0]?.user;
  if (!cluster || !user) throw new Error(`${kubeconfigPath} has no cluster or user`);
  return {
    job_name: "kubelet-cadvisor",
    scheme: "https",
    tls_config: {
      ca_file: cluster["certificate-authority"],
      cert_file: user["client-certificate"],
      key_file: user["client-key"],
    },
    static_configs: nodes.map((node) => ({
      targets: [new URL(cluster.server).host],
      labels: { node },
    })),
    relabel_configs: [
      {
        source_labels: ["node"],
        regex: "(.+)",
        target_label: "__metrics_path__",
        replacement: "/api/v1/nodes/$1/proxy/metrics/cadvisor",
      },
    ],
  };
}

function readTail(file: string): string {
  try {
    return readFileSync(file, "utf8").slice(-2000);
  } catch {
    return "";
  }
}

/** Debian's prometheus package installs the server as /usr/bin/prometheus. */
export function findPrometheus(): string {
  try {
    return execFileSync("sh", ["-c", "command -v prometheus"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(
      "prometheus is not installed: apt-get install prometheus (Debian) provides it and promtool",
    );
  }
}
