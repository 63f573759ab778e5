// One real control plane per test run, shared by every suite (suites isolate
// themselves by namespace), with a real node where one can run, and one
// PostgreSQL that pods on that node reach on the node's bridge address.
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { type LocalCluster, startLocalCluster } from "./controlplane/local-cluster.ts";
import { type PostgresServer, startPostgres } from "./support/postgres.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfigPath: string;
    binDir: string;
    postgresUrl: string;
    /** The real node, or why there is none (one line). */
    realNode: { nodeName: string; hostAddress: string } | { unavailable: string };
  }
}

let cluster: LocalCluster | undefined;
let postgres: PostgresServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  const log = (line: string) => process.stderr.write(`[control plane] ${line}\n`);
  const started = Date.now();
  cluster = await startLocalCluster({ log });
  const { controlPlane, node } = cluster;
  log(`cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // Every suite works with BackgroundTasks: install the committed CRD once.
  controlPlane.kubectl([
    "apply",
    "--server-side",
    "-f",
    fileURLToPath(new URL("../crds/nightshift.dev_backgroundtasks.yaml", import.meta.url)),
  ]);
  controlPlane.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/backgroundtasks.nightshift.dev",
    "--timeout=60s",
  ]);
  project.provide("kubeconfigPath", controlPlane.kubeconfigPath);
  project.provide("binDir", cluster.binDir);
  project.provide(
    "realNode",
    node
      ? { nodeName: node.nodeName, hostAddress: node.hostAddress }
      : { unavailable: cluster.nodeUnavailable ?? "no real node" },
  );
  postgres = await startPostgres(
    log,
    node ? { listenAddresses: [node.hostAddress], trustNetworks: [node.identity.podCidr] } : {},
  );
  project.provide("postgresUrl", postgres.url);
}

export async function teardown(): Promise<void> {
  await Promise.all([cluster?.stop(), postgres?.stop()]);
}
