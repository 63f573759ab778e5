// The whole local cluster as tests and the demo use it: the control plane
// (with kwok's fake node) and, wherever it can run, a real node with
// Nightshift's images imported. The node's runtime, the image builds and
// imports run while the control plane starts; only the kubelet waits for it.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ImageArchive } from "../../scripts/images/oci-archive.ts";
import { ControlPlane, ensureBinaries } from "./controlplane.ts";
import { RealNode, realNodeUnavailable } from "./real-node.ts";

const execFileAsync = promisify(execFile);
const buildScript = fileURLToPath(new URL("../../scripts/images/build.ts", import.meta.url));

/** Images a real node gets: the sandbox image, the task runner, the custom-task test image, the operator (the chart's e2e). */
export const NODE_IMAGES = ["pause", "task-runner", "testbox", "operator"] as const;

export interface LocalCluster {
  controlPlane: ControlPlane;
  binDir: string;
  node?: RealNode;
  /** Why there is no real node, in one line. */
  nodeUnavailable?: string;
  images: Record<string, ImageArchive>;
  stop(): Promise<void>;
}

export interface LocalClusterOptions {
  log?: (line: string) => void;
  /** Folder for the control plane's state (default: a fresh temporary one). */
  workDir?: string;
  /** Start a real node when possible (default true). */
  realNode?: boolean;
}

/** Builds (or finds cached) the images in a child process, so the event loop keeps running. */
export async function buildImagesAsync(
  names: readonly string[],
): Promise<Record<string, ImageArchive>> {
  const { stdout } = await execFileAsync(process.execPath, [buildScript, "--json", ...names], {
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout);
}

export async function startLocalCluster(options: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = options.log ?? (() => {});
  const binDir = ensureBinaries(log);
  const controlPlane = new ControlPlane({
    log,
    ...(options.workDir ? { workDir: options.workDir } : {}),
  });
  const nodeUnavailable =
    options.realNode === false ? "real node disabled by the caller" : realNodeUnavailable(binDir);
  const node = nodeUnavailable
    ? undefined
    : new RealNode({ binDir, workDir: controlPlane.workDir, log: (l) => log(`node: ${l}`) });
  if (nodeUnavailable) log(`no real node: ${nodeUnavailable}`);
  let images: Record<string, ImageArchive> = {};
  const access = () => ({
    apiServerUrl: controlPlane.apiServerUrl,
    pkiDir: controlPlane.workDir,
    kubectl: (args: string[], input?: string) => controlPlane.kubectl(args, input),
  });
  const stop = async () => {
    await node?.stop(access());
    await controlPlane.stop();
  };
  try {
    const runtime = node
      ? (async () => {
          images = await buildImagesAsync(NODE_IMAGES);
          const archives = NODE_IMAGES.map((name) => images[name]?.path ?? "");
          await node.startRuntime(archives);
        })()
      : Promise.resolve();
    // Both halves settle before anything is torn down on failure.
    const [cp, rt] = await Promise.allSettled([controlPlane.start(), runtime]);
    if (cp.status === "rejected") throw cp.reason;
    if (rt.status === "rejected") throw rt.reason;
    const started = Date.now();
    await node?.join(access());
    if (node) log(`node: kubelet start -> Ready ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return {
    controlPlane,
    binDir,
    ...(node ? { node } : {}),
    ...(nodeUnavailable ? { nodeUnavailable } : {}),
    images,
    stop,
  };
}
