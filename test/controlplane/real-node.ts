// A real node for the local control plane: containerd + runc + bridge CNI +
// kubelet, all state under one folder, joined as a tainted node that only
// routed namespaces use (kwok's fake node keeps everything else). Started in
// two halves so the runtime and image imports overlap the control plane's
// start; torn down completely, and a node left by a crashed harness is swept
// by the next one (see node-slots.ts).
import { execFile, execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  cniConfig,
  containerdConfig,
  KUBELET_SYSCTLS,
  kubeletConfig,
  kubeletKubeconfig,
  type NodePaths,
} from "./node-config.ts";
import { type NodeIdentity, nodeIdentity, REAL_NODE_KEY } from "./node-identity.ts";
import { claimSlot, releaseSlot, type SlotRecord, takeStaleSlots } from "./node-slots.ts";
import { signedCert } from "./pki.ts";
import { freePorts, type ManagedProcess, startProcess, stopProcess } from "./processes.ts";

const execFileAsync = promisify(execFile);

/** Paths kubelet and containerd use outside any configurable folder; emptied folders are removed. */
const SHARED_PATHS = [
  "/var/lib/kubelet/device-plugins/kubelet.sock",
  "/var/lib/kubelet/device-plugins",
  "/var/lib/kubelet",
  "/var/log/containers",
  "/run/containerd/s",
  "/run/containerd",
  "/var/run/netns",
  "/var/lib/cni/results",
  "/var/lib/cni",
];

export const PAUSE_IMAGE = "nightshift.local/pause:1";

/** Why a real node cannot run here, in one line; undefined when it can. */
export function realNodeUnavailable(binDir: string): string | undefined {
  if (process.platform !== "linux") return `a real node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0)
    return "a real node needs root (containerd, mounts, cgroups, a bridge); run the tests as root";
  if (!existsSync("/sys/fs/cgroup/pids") && !existsSync("/sys/fs/cgroup/cgroup.procs"))
    return "a real node needs cgroups mounted under /sys/fs/cgroup";
  for (const tool of ["runc", "ip", "mount", "umount", "tar"])
    if (!which(tool)) return `a real node needs \`${tool}\` on PATH (apt-get install ${tool})`;
  for (const bin of ["kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "bridge", "pause"])
    if (!existsSync(join(binDir, bin)))
      return `a real node needs ${bin} in ${binDir} (test/controlplane/build-binaries.sh builds it)`;
  return undefined;
}

function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    if (dir && existsSync(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${name.replaceAll(".", "/")}`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function writeSysctl(line: string): void {
  const at = line.indexOf("=");
  try {
    writeFileSync(`/proc/sys/${line.slice(0, at).replaceAll(".", "/")}`, line.slice(at + 1));
  } catch {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface ControlPlaneAccess {
  apiServerUrl: string;
  /** Folder of the cluster CA (ca.crt, ca.key), where the node's client certificate is signed. */
  pkiDir: string;
  kubectl: (args: string[], input?: string) => string;
}

export interface RealNodeOptions {
  binDir: string;
  /** Parent folder; the node's state is <workDir>/node-<slot>. */
  workDir: string;
  log?: (line: string) => void;
}

export class RealNode {
  readonly identity: NodeIdentity;
  readonly state: string;
  private readonly binDir: string;
  private readonly log: (line: string) => void;
  private readonly paths: NodePaths;
  private containerd?: ManagedProcess;
  private kubelet?: ManagedProcess;
  private readonly stale: SlotRecord[];
  private stopped = false;

  constructor(options: RealNodeOptions) {
    this.binDir = options.binDir;
    this.log = options.log ?? (() => {});
    const claim = claimSlot(
      (slot) => join(options.workDir, `node-${slot}`),
      KUBELET_SYSCTLS,
      SHARED_PATHS,
      readSysctl,
    );
    this.stale = claim.stale;
    this.identity = nodeIdentity(claim.slot);
    this.state = join(options.workDir, `node-${claim.slot}`);
    this.paths = nodePaths(this.state, this.binDir);
  }

  get nodeName(): string {
    return this.identity.nodeName;
  }

  /** The address pods reach host services on (the bridge's). */
  get hostAddress(): string {
    return this.identity.hostAddress;
  }

  /**
   * First half, independent of the control plane: sweeps nodes of crashed
   * harnesses, starts containerd and imports the images (the pause image
   * must be among them).
   */
  async startRuntime(imageArchives: string[]): Promise<void> {
    await sweepRecords(this.stale, this.binDir, this.log);
    const s = this.state;
    for (const dir of ["pki", "logs", "cni/net.d", "containerd", "kubelet", "pod-logs"])
      mkdirSync(join(s, dir), { recursive: true });
    writeFileSync(join(s, "containerd", "config.toml"), containerdConfig(this.paths));
    writeFileSync(
      join(s, "cni", "net.d", "10-nightshift.conflist"),
      cniConfig(this.identity, this.state),
    );
    // The bridge exists before any pod, with the host's address on it.
    const { bridge, hostAddress } = this.identity;
    execFileSync("ip", ["link", "add", bridge, "type", "bridge"], { stdio: "ignore" });
    execFileSync("ip", ["addr", "add", `${hostAddress}/24`, "dev", bridge]);
    execFileSync("ip", ["link", "set", bridge, "up"]);

    this.containerd = startContainerd(this.paths, this.binDir);
    await this.waitFor("containerd", async () => {
      await this.ctr(["version"]);
      return true;
    });
    const started = Date.now();
    await Promise.all(
      imageArchives.map((archive) =>
        this.ctr(["-n", "k8s.io", "images", "import", "--platform", "linux/amd64", archive]),
      ),
    );
    this.log(
      `imported ${imageArchives.length} images in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }

  /** Second half: a node certificate, RBAC for nodes, the kubelet; waits for the node Ready. */
  async join(controlPlane: ControlPlaneAccess): Promise<void> {
    const { nodeName } = this.identity;
    const certName = `node-${this.identity.slot}`;
    signedCert(
      controlPlane.pkiDir,
      certName,
      `/O=system:nodes/CN=system:node:${nodeName}`,
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth",
    );
    const caCert = join(controlPlane.pkiDir, "ca.crt");
    writeFileSync(
      join(this.state, "kubelet.kubeconfig"),
      kubeletKubeconfig(
        controlPlane.apiServerUrl,
        caCert,
        join(controlPlane.pkiDir, `${certName}.crt`),
        join(controlPlane.pkiDir, `${certName}.key`),
      ),
    );
    // The control plane authorizes with RBAC only (no Node authorizer).
    controlPlane.kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "nightshift-system-nodes" },
        roleRef: {
          apiGroup: "rbac.authorization.k8s.io",
          kind: "ClusterRole",
          name: "system:node",
        },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:nodes" }],
      }),
    );
    const [port, healthz] = await freePorts(2);
    if (!port || !healthz) throw new Error("no free ports for the kubelet");
    writeFileSync(
      join(this.state, "kubelet.yaml"),
      kubeletConfig(this.identity, { ...this.paths, caCert }, { port, healthz }),
    );
    createCgroupRoot(this.identity.cgroupRoot);
    this.kubelet = startProcess(
      "kubelet",
      join(this.binDir, "kubelet"),
      [
        `--config=${join(this.state, "kubelet.yaml")}`,
        `--kubeconfig=${join(this.state, "kubelet.kubeconfig")}`,
        `--root-dir=${join(this.state, "kubelet")}`,
        `--cert-dir=${join(this.state, "kubelet", "pki")}`,
        `--hostname-override=${nodeName}`,
        `--node-labels=${REAL_NODE_KEY}=true`,
        `--register-with-taints=${REAL_NODE_KEY}=true:NoSchedule`,
        "--v=1",
      ],
      join(this.state, "logs", "kubelet.log"),
    );
    await this.waitFor("real node Ready", async () => {
      const ready = controlPlane.kubectl([
        "get",
        "node",
        nodeName,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      return ready === "True";
    });
  }

  /** Stops everything and puts the machine back; the control plane may already be gone. */
  async stop(controlPlane?: ControlPlaneAccess): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.kubelet) await stopProcess(this.kubelet);
    await sweepNode(this.identity, this.state, this.binDir, this.log, this.containerd);
    try {
      controlPlane?.kubectl(["delete", "node", this.identity.nodeName, "--ignore-not-found"]);
    } catch {}
    releaseSlot(this.identity.slot, restoreMachine);
  }

  private ctr(args: string[]): Promise<unknown> {
    return execFileAsync(join(this.binDir, "ctr"), [
      "--address",
      this.paths.containerdSocket,
      ...args,
    ]);
  }

  private async waitFor(what: string, ready: () => Promise<boolean>, timeoutMs = 120_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const proc of [this.containerd, this.kubelet]) {
        if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null))
          throw new Error(`${proc.name} exited while waiting for ${what}; see ${proc.logFile}`);
      }
      if (await ready().catch(() => false)) {
        this.log(`${what}`);
        return;
      }
      await sleep(200);
    }
    throw new Error(
      `timed out after ${timeoutMs} ms waiting for ${what}; logs in ${this.state}/logs`,
    );
  }
}

async function sweepRecords(records: SlotRecord[], binDir: string, log: (line: string) => void) {
  for (const record of records) {
    log(`sweeping the real node left by a crashed harness (slot ${record.slot})`);
    await sweepNode(nodeIdentity(record.slot), record.state, binDir, log);
    releaseSlot(record.slot, restoreMachine);
  }
}

/** What the next harness does at start: sweeps every node whose harness died. */
export async function sweepCrashedNodes(binDir: string, log: (line: string) => void = () => {}) {
  await sweepRecords(takeStaleSlots(), binDir, log);
}

function nodePaths(state: string, binDir: string): NodePaths {
  return {
    state,
    containerdSocket: join(state, "containerd", "containerd.sock"),
    cniBin: binDir,
    runc: which("runc") ?? "runc",
    caCert: "",
    pauseImage: PAUSE_IMAGE,
  };
}

function startContainerd(paths: NodePaths, binDir: string): ManagedProcess {
  mkdirSync(join(paths.state, "logs"), { recursive: true });
  const proc = startProcess(
    "containerd",
    join(binDir, "containerd"),
    ["--config", join(paths.state, "containerd", "config.toml")],
    join(paths.state, "logs", "containerd.log"),
  );
  return proc;
}

function cgroupHierarchies(): string[] {
  return readdirSync("/sys/fs/cgroup", { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join("/sys/fs/cgroup", e.name, "cgroup.procs")))
    .map((e) => join("/sys/fs/cgroup", e.name));
}

/** kubelet wants its cgroupRoot in every v1 hierarchy ("cgroup [...] has some missing paths"). */
function createCgroupRoot(cgroupRoot: string): void {
  for (const h of cgroupHierarchies()) {
    const dir = join(h, cgroupRoot);
    mkdirSync(dir, { recursive: true });
    if (existsSync(join(h, "cpuset.cpus"))) {
      writeFileSync(join(dir, "cpuset.cpus"), readFileSync(join(h, "cpuset.cpus")));
      writeFileSync(join(dir, "cpuset.mems"), readFileSync(join(h, "cpuset.mems")));
    }
  }
}

function processesMatching(test: (cmdline: string) => boolean): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        const cmdline = readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ");
        return test(cmdline) ? [Number(p)] : [];
      } catch {
        return [];
      }
    });
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}

function cgroupDirsDeepestFirst(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const children = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => cgroupDirsDeepestFirst(join(dir, e.name)));
  return [...children, dir];
}

/** Mount points under a folder, deepest first (/proc/self/mounts escapes spaces as \040). */
function mountsUnder(dir: string): string[] {
  const prefix = `${dir}/`;
  return readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((line) =>
      (line.split(" ")[1] ?? "").replace(/\\([0-7]{3})/g, (_, o) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    )
    .filter((m) => m.startsWith(prefix))
    .sort()
    .reverse();
}

/**
 * Removes every trace of a node: its pods (through the CRI, so CNI DEL runs),
 * containerd and its shims, leftover pod processes, mounts, the bridge, its
 * cgroups, log links, and the state folder. After a crash containerd is
 * started again on the same state first: it reconnects to its shims.
 */
export async function sweepNode(
  identity: NodeIdentity,
  state: string,
  binDir: string,
  log: (line: string) => void,
  running?: ManagedProcess,
): Promise<void> {
  const started = Date.now();
  const paths = nodePaths(state, binDir);
  let containerd = running;
  const socket = paths.containerdSocket;
  // A kubelet of a crashed harness died with it (pdeathsig); anything else of this state goes.
  killAll(processesMatching((c) => c.includes(`--root-dir=${join(state, "kubelet")}`)));
  const alive = containerd && containerd.child.exitCode === null && !containerd.child.signalCode;
  if (!alive && existsSync(join(state, "containerd", "config.toml"))) {
    containerd = startContainerd(paths, binDir);
    for (let i = 0; i < 100; i++) {
      try {
        await execFileAsync(join(binDir, "ctr"), ["--address", socket, "version"]);
        break;
      } catch {
        await sleep(100);
      }
    }
  }
  if (existsSync(socket)) {
    try {
      await execFileAsync(join(binDir, "cri-cleanup"), [`unix://${socket}`], { timeout: 60_000 });
    } catch (error) {
      log(`cri-cleanup: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  const shims = processesMatching((c) => c.includes(`-address ${socket} `));
  if (containerd) await stopProcess(containerd);
  killAll(shims);
  // Last resort: anything still in this node's pod cgroups.
  for (const dir of cgroupDirsDeepestFirst(join("/sys/fs/cgroup/pids", identity.cgroupRoot))) {
    try {
      killAll(
        readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number),
      );
    } catch {}
  }
  for (const mount of mountsUnder(state)) {
    try {
      execFileSync("umount", ["-l", mount], { stdio: "ignore" });
    } catch {}
  }
  try {
    execFileSync("ip", ["link", "del", identity.bridge], { stdio: "ignore" });
  } catch {}
  for (const h of existsSync("/sys/fs/cgroup") ? cgroupHierarchies() : []) {
    for (const dir of cgroupDirsDeepestFirst(join(h, identity.cgroupRoot))) {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          rmdirSync(dir);
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") break;
          await sleep(100); // processes just killed leave their cgroup a moment later
        }
      }
    }
  }
  if (existsSync("/var/log/containers")) {
    for (const link of readdirSync("/var/log/containers")) {
      const path = join("/var/log/containers", link);
      try {
        if (readlinkSync(path).startsWith(`${state}/`)) unlinkSync(path);
      } catch {}
    }
  }
  rmSync(state, { recursive: true, force: true });
  log(
    `real node ${identity.nodeName} torn down in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}

/** The last node out puts the kernel settings back and removes the shared paths it made. */
function restoreMachine(saved: { sysctls: string[]; preexisting: string[] }): void {
  for (const line of saved.sysctls) writeSysctl(line);
  for (const path of SHARED_PATHS) {
    if (saved.preexisting.includes(path)) continue;
    try {
      if (path.endsWith(".sock")) unlinkSync(path);
      else rmdirSync(path);
    } catch {}
  }
}
