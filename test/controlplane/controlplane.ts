// Supervises a real, local Kubernetes control plane built from Go modules:
// etcd → kube-apiserver → kube-controller-manager → kube-scheduler → kwok with
// one fake node. Everything runs as children of this process on free loopback
// ports, with a throwaway CA, and dies with it.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ControlPlanePki, createPki } from "./pki.ts";
import { freePorts, type ManagedProcess, startProcess, stopProcess } from "./processes.ts";

const here = dirname(fileURLToPath(import.meta.url));

export interface ControlPlaneOptions {
  /** Folder for certificates, data and logs; a fresh temporary one by default. */
  workDir?: string;
  /** Names of the fake nodes kwok manages. */
  nodes?: string[];
  log?: (line: string) => void;
}

/** Builds (once per machine) the binaries and returns the folder holding them. */
export function ensureBinaries(log: (line: string) => void = () => {}): string {
  const script = join(here, "build-binaries.sh");
  const output = execFileSync("bash", [script], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = output.trim().split("\n");
  const binDir = lines[lines.length - 1];
  if (!binDir) throw new Error("build-binaries.sh printed no binary folder");
  log(`control plane binaries in ${binDir}`);
  return binDir;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class ControlPlane {
  readonly workDir: string;
  readonly kubeconfigPath: string;
  apiServerUrl = "";
  private readonly processes: ManagedProcess[] = [];
  private pki?: ControlPlanePki;
  private readonly ownsWorkDir: boolean;
  private readonly nodes: string[];
  private readonly log: (line: string) => void;

  constructor(options: ControlPlaneOptions = {}) {
    this.ownsWorkDir = !options.workDir;
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), "nightshift-cp-"));
    mkdirSync(this.workDir, { recursive: true });
    this.kubeconfigPath = join(this.workDir, "kubeconfig");
    this.nodes = options.nodes ?? ["kwok-node-0"];
    this.log = options.log ?? (() => {});
  }

  /** The apiserver's audit log: writes by users in the group nightshift:audited (audit-policy.yaml). */
  get auditLogPath(): string {
    return join(this.workDir, "logs", "audit.log");
  }

  /** Ports of every listening child, so tests can prove they are released. */
  ports: Record<string, number> = {};

  get pids(): number[] {
    return Object.values(this.pidsByName);
  }

  /** Each running child's pid by its name (etcd, kube-apiserver, ...), for benchmarks reading their CPU time. */
  get pidsByName(): Record<string, number> {
    return Object.fromEntries(
      this.processes.flatMap((p) => (p.child.pid ? [[p.name, p.child.pid]] : [])),
    );
  }

  async start(): Promise<void> {
    const bin = ensureBinaries(this.log);
    const pki = createPki(this.workDir);
    this.pki = pki;
    const [etcdClient, etcdPeer, apiserver, kcm, scheduler, kwok] = await freePorts(6);
    if (!kwok || !etcdClient || !etcdPeer || !apiserver || !kcm || !scheduler)
      throw new Error("no free ports");
    this.ports = { etcdClient, etcdPeer, apiserver, kcm, scheduler, kwok };
    this.apiServerUrl = `https://127.0.0.1:${apiserver}`;
    this.writeKubeconfig();
    const logs = join(this.workDir, "logs");
    mkdirSync(logs, { recursive: true });

    try {
      this.spawn(
        "etcd",
        join(bin, "etcd"),
        [
          `--data-dir=${join(this.workDir, "etcd")}`,
          `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
          `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
          "--unsafe-no-fsync",
          "--quota-backend-bytes=8589934592",
          "--log-level=warn",
        ],
        logs,
      );
      await this.waitFor("etcd", () => httpOk(`http://127.0.0.1:${etcdClient}/health`));

      this.spawn(
        "kube-apiserver",
        join(bin, "kube-apiserver"),
        [
          `--etcd-servers=http://127.0.0.1:${etcdClient}`,
          "--bind-address=127.0.0.1",
          "--advertise-address=127.0.0.1",
          `--secure-port=${apiserver}`,
          `--cert-dir=${join(this.workDir, "apiserver-certs")}`,
          `--tls-cert-file=${pki.servingCert}`,
          `--tls-private-key-file=${pki.servingKey}`,
          `--client-ca-file=${pki.caCert}`,
          `--service-account-key-file=${pki.serviceAccountPub}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          "--service-account-issuer=https://kubernetes.default.svc",
          "--service-cluster-ip-range=10.0.0.0/24",
          "--authorization-mode=RBAC",
          "--allow-privileged=true",
          "--enable-priority-and-fairness=false",
          // A real kubelet (real-node.ts): reached by IP (`kubectl logs`), as admin.
          `--kubelet-client-certificate=${pki.adminCert}`,
          `--kubelet-client-key=${pki.adminKey}`,
          "--kubelet-preferred-address-types=InternalIP,Hostname",
          // Namespace annotations route pods to the real node and tolerate its taint.
          "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
          `--audit-policy-file=${join(here, "audit-policy.yaml")}`,
          `--audit-log-path=${this.auditLogPath}`,
          "--audit-log-format=json",
          "--audit-log-mode=blocking",
          "--v=1",
        ],
        logs,
      );
      await this.waitFor("kube-apiserver", () => this.apiOk("/readyz"));

      const common = [
        `--kubeconfig=${this.kubeconfigPath}`,
        `--authentication-kubeconfig=${this.kubeconfigPath}`,
        `--authorization-kubeconfig=${this.kubeconfigPath}`,
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
      ];
      this.spawn(
        "kube-controller-manager",
        join(bin, "kube-controller-manager"),
        [
          ...common,
          `--secure-port=${kcm}`,
          `--cert-dir=${join(this.workDir, "kcm-certs")}`,
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.caCert}`,
          `--cluster-signing-cert-file=${pki.caCert}`,
          `--cluster-signing-key-file=${pki.caKey}`,
          "--controllers=*",
          "--concurrent-job-syncs=10",
          "--concurrent-cron-job-syncs=10",
          "--concurrent-gc-syncs=10",
          "--kube-api-qps=200",
          "--kube-api-burst=400",
          "--v=1",
        ],
        logs,
      );
      await this.waitFor("kube-controller-manager", () =>
        httpOk(`https://127.0.0.1:${kcm}/healthz`),
      );

      this.spawn(
        "kube-scheduler",
        join(bin, "kube-scheduler"),
        [
          ...common,
          `--secure-port=${scheduler}`,
          `--cert-dir=${join(this.workDir, "scheduler-certs")}`,
          "--kube-api-qps=200",
          "--kube-api-burst=400",
          "--v=1",
        ],
        logs,
      );
      await this.waitFor("kube-scheduler", () => httpOk(`https://127.0.0.1:${scheduler}/healthz`));

      this.spawn(
        "kwok",
        join(bin, "kwok"),
        [
          `--kubeconfig=${this.kubeconfigPath}`,
          `--config=${join(here, "kwok-stages.yaml")}`,
          "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
          `--server-address=127.0.0.1:${kwok}`,
          "--cidr=10.244.0.0/16",
          "--node-ip=127.0.0.1",
        ],
        logs,
      );
      for (const node of this.nodes) this.kubectl(["apply", "-f", "-"], nodeManifest(node));
      await this.waitFor("fake nodes", async () => this.nodesReady());
      await this.waitFor("default service account", async () => {
        try {
          this.kubectl(["get", "serviceaccount", "default", "-n", "default"]);
          return true;
        } catch {
          return false;
        }
      });
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    // Reverse start order: clients first, etcd last.
    for (const proc of [...this.processes].reverse()) await stopProcess(proc);
    this.processes.length = 0;
    if (this.ownsWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Runs the matching kubectl against this control plane and returns its stdout. */
  kubectl(args: string[], input?: string): string {
    const bin = join(ensureBinaryDir(), "kubectl");
    return execFileSync(bin, [`--kubeconfig=${this.kubeconfigPath}`, ...args], {
      encoding: "utf8",
      input,
      stdio: ["pipe", "pipe", "pipe"],
    });
  }

  private spawn(name: string, command: string, args: string[], logs: string): void {
    this.log(`starting ${name}`);
    this.processes.push(startProcess(name, command, args, join(logs, `${name}.log`)));
  }

  private async waitFor(
    what: string,
    ready: () => Promise<boolean>,
    timeoutMs = 120_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const dead = this.processes.find(
        (p) => p.child.exitCode !== null || p.child.signalCode !== null,
      );
      if (dead) {
        throw new Error(
          `${dead.name} exited (code ${dead.child.exitCode}) while waiting for ${what}; see ${dead.logFile}`,
        );
      }
      if (await ready().catch(() => false)) {
        this.log(`${what} ready`);
        return;
      }
      await sleep(200);
    }
    throw new Error(
      `timed out after ${timeoutMs} ms waiting for ${what}; logs in ${join(this.workDir, "logs")}`,
    );
  }

  private apiOk(path: string): Promise<boolean> {
    const pki = this.pki;
    if (!pki) return Promise.resolve(false);
    return httpOk(`${this.apiServerUrl}${path}`, pki);
  }

  private nodesReady(): boolean {
    const out = this.kubectl([
      "get",
      "nodes",
      "-o",
      'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
    ]);
    const ready = new Set(
      out
        .split("\n")
        .filter((l) => l.endsWith("=True"))
        .map((l) => l.split("=")[0]),
    );
    return this.nodes.every((n) => ready.has(n));
  }

  private writeKubeconfig(): void {
    const pki = this.pki;
    if (!pki) throw new Error("PKI not created");
    writeFileSync(
      this.kubeconfigPath,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: nightshift-local",
        "  cluster:",
        `    server: ${this.apiServerUrl}`,
        `    certificate-authority: ${pki.caCert}`,
        "users:",
        "- name: nightshift-admin",
        "  user:",
        `    client-certificate: ${pki.adminCert}`,
        `    client-key: ${pki.adminKey}`,
        "contexts:",
        "- name: nightshift-local",
        "  context: {cluster: nightshift-local, user: nightshift-admin}",
        "current-context: nightshift-local",
        "",
      ].join("\n"),
    );
  }
}

let cachedBinDir: string | undefined;
function ensureBinaryDir(): string {
  cachedBinDir ??= ensureBinaries();
  return cachedBinDir;
}

function nodeManifest(name: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      annotations: { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" },
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        type: "kwok",
      },
    },
    spec: {},
  });
}

/** True when a GET on the URL answers 200; with a PKI, authenticates as admin. */
function httpOk(url: string, pki?: ControlPlanePki): Promise<boolean> {
  if (url.startsWith("http:")) {
    return fetch(url).then(
      (r) => r.ok,
      () => false,
    );
  }
  return new Promise((resolve) => {
    const options = pki
      ? {
          ca: readFileSync(pki.caCert),
          cert: readFileSync(pki.adminCert),
          key: readFileSync(pki.adminKey),
        }
      : { rejectUnauthorized: false };
    const req = request(url, { ...options, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
