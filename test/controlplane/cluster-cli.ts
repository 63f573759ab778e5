// `make cluster`: runs the local control plane (with a real node where one can
// run) until SIGTERM or Ctrl-C, with its kubeconfig at .cluster/kubeconfig for
// kubectl and `make run`.
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { type LocalCluster, startLocalCluster } from "./local-cluster.ts";

const clusterDir = resolve(process.argv[2] ?? ".cluster");
mkdirSync(clusterDir, { recursive: true });
rmSync(`${clusterDir}/ready`, { force: true });
const workDir = `${clusterDir}/state`;
rmSync(workDir, { recursive: true, force: true });

let cluster: LocalCluster | undefined;
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`[control plane] ${signal}: stopping`);
  await cluster?.stop();
  rmSync(`${clusterDir}/ready`, { force: true });
  rmSync(`${clusterDir}/pid`, { force: true });
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

writeFileSync(`${clusterDir}/pid`, `${process.pid}\n`);
cluster = await startLocalCluster({
  workDir,
  log: (line) => console.log(`[control plane] ${line}`),
});
const { controlPlane } = cluster;
copyFileSync(controlPlane.kubeconfigPath, `${clusterDir}/kubeconfig`);
writeFileSync(`${clusterDir}/ready`, `${controlPlane.apiServerUrl}\n`);
console.log(
  `[control plane] ready at ${controlPlane.apiServerUrl}; KUBECONFIG=${clusterDir}/kubeconfig`,
);
// Stay alive: the children die with this process.
setInterval(() => {}, 1 << 30);
