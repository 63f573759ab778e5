// A real node leaves nothing behind: after a clean stop, and after its harness
// is killed with pods running (the next harness sweeps it). A second node
// joins the shared control plane for this, beside the run's own real node.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, it } from "vitest";
import { buildImagesAsync } from "../controlplane/local-cluster.ts";
import type { NodeIdentity } from "../controlplane/node-identity.ts";
import { slotRecords } from "../controlplane/node-slots.ts";
import { sweepCrashedNodes } from "../controlplane/real-node.ts";
import { createNamespace, eventually, kubectl } from "../support/cluster.ts";
import { realNode, TESTBOX_IMAGE } from "../support/real-node.ts";

const CLI = fileURLToPath(new URL("../controlplane/real-node-cli.ts", import.meta.url));

interface Joined {
  child: ChildProcess;
  nodeName: string;
  state: string;
  identity: NodeIdentity;
}

async function joinSecondNode(): Promise<Joined> {
  const images = await buildImagesAsync(["pause", "testbox"]);
  const child = spawn(
    process.execPath,
    [
      CLI,
      inject("kubeconfigPath"),
      inject("binDir"),
      images.pause?.path ?? "",
      images.testbox?.path ?? "",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const line = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`node CLI exited: ${out}`);
      return out.split("\n").find((l) => l.startsWith("{"));
    },
    { timeoutMs: 180_000, what: "the second node Ready" },
  );
  return { child, ...JSON.parse(line) };
}

/** A pod pinned to the node (nodeName skips the scheduler and the taint), running. */
async function runPodOn(node: Joined): Promise<void> {
  const ns = await createNamespace("teardown");
  kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "sleeper", namespace: ns },
      spec: {
        nodeName: node.nodeName,
        containers: [{ name: "main", image: TESTBOX_IMAGE, args: ["sleep", "600"] }],
      },
    }),
  );
  await eventually(
    () =>
      kubectl(["get", "pod", "sleeper", "-n", ns, "-o", "jsonpath={.status.phase}"]) === "Running"
        ? true
        : undefined,
    { timeoutMs: 120_000, what: "the pod Running on the second node" },
  );
}

/** Every trace a node can leave on the machine, empty when it left nothing. */
function traces(node: Joined): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmdline.includes(node.state)) found.push(`process ${pid}: ${cmdline.slice(0, 120)}`);
    } catch {}
  }
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n"))
    if (line.includes(node.state)) found.push(`mount ${line.split(" ")[1]}`);
  try {
    execFileSync("ip", ["link", "show", node.identity.bridge], { stdio: "ignore" });
    found.push(`bridge ${node.identity.bridge}`);
  } catch {}
  for (const h of readdirSync("/sys/fs/cgroup"))
    if (existsSync(`/sys/fs/cgroup/${h}${node.identity.cgroupRoot}`))
      found.push(`cgroup ${h}${node.identity.cgroupRoot}`);
  if (existsSync("/var/log/containers"))
    for (const link of readdirSync("/var/log/containers"))
      try {
        if (readlinkSync(`/var/log/containers/${link}`).startsWith(node.state))
          found.push(`log link ${link}`);
      } catch {}
  if (existsSync(node.state)) found.push(`state folder ${node.state}`);
  if (slotRecords().some((r) => r.slot === node.identity.slot))
    found.push(`registry slot ${node.identity.slot}`);
  return found;
}

describe("real node teardown", () => {
  it("a clean stop leaves nothing behind", async () => {
    realNode();
    const node = await joinSecondNode();
    await runPodOn(node);
    expect(traces(node).length).toBeGreaterThan(0);
    const exited = new Promise((resolve) => node.child.once("exit", resolve));
    node.child.kill("SIGTERM");
    await exited;
    expect(traces(node)).toEqual([]);
    expect(kubectl(["get", "nodes", "-o", "name"])).not.toContain(node.nodeName);
  }, 400_000);

  it("after the harness is killed with a pod running, the next harness sweeps everything", async () => {
    realNode();
    const node = await joinSecondNode();
    await runPodOn(node);
    const exited = new Promise((resolve) => node.child.once("exit", resolve));
    node.child.kill("SIGKILL");
    await exited;
    // kubelet and containerd died with it; the pod's shim and processes did not.
    expect(traces(node).some((t) => t.startsWith("process"))).toBe(true);
    await sweepCrashedNodes(inject("binDir"));
    expect(traces(node)).toEqual([]);
    kubectl(["delete", "node", node.nodeName, "--ignore-not-found"]);
  }, 400_000);
});
