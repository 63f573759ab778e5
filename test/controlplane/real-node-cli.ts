// Joins one more real node to a running local control plane and keeps it up
// until SIGTERM (clean teardown) — or until it is killed, which leaves the node
// for the next harness to sweep. For the teardown tests.
// Usage: node real-node-cli.ts <kubeconfig> <bin-dir> <image-archive>...
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { RealNode } from "./real-node.ts";

const [kubeconfig, binDir, ...images] = process.argv.slice(2);
if (!kubeconfig || !binDir)
  throw new Error("usage: real-node-cli.ts <kubeconfig> <bin-dir> <image>...");
const apiServerUrl = /server: (\S+)/.exec(readFileSync(kubeconfig, "utf8"))?.[1] ?? "";
const access = {
  apiServerUrl,
  pkiDir: dirname(kubeconfig),
  kubectl: (args: string[], input?: string) =>
    execFileSync(join(binDir, "kubectl"), [`--kubeconfig=${kubeconfig}`, ...args], {
      encoding: "utf8",
      input,
      stdio: ["pipe", "pipe", "pipe"],
    }),
};
const node = new RealNode({ binDir, workDir: mkdtempSync(join(tmpdir(), "nightshift-node-")) });
process.on("SIGTERM", () => {
  void node.stop(access).then(() => process.exit(0));
});
await node.startRuntime(images);
await node.join(access);
console.log(
  JSON.stringify({ nodeName: node.nodeName, state: node.state, identity: node.identity }),
);
setInterval(() => {}, 1 << 30);
