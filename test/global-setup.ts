// One real control plane per test run, shared by every suite; suites isolate
// themselves by namespace.
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { ControlPlane, ensureBinaries } from "./controlplane/controlplane.ts";
import { type PostgresServer, startPostgres } from "./support/postgres.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfigPath: string;
    binDir: string;
    postgresUrl: string;
  }
}

let controlPlane: ControlPlane | undefined;
let postgres: PostgresServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  const log = (line: string) => process.stderr.write(`[control plane] ${line}\n`);
  const binDir = ensureBinaries(log);
  controlPlane = new ControlPlane({ log });
  await controlPlane.start();
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
  project.provide("binDir", binDir);
  postgres = await startPostgres(log);
  project.provide("postgresUrl", postgres.url);
}

export async function teardown(): Promise<void> {
  await Promise.all([controlPlane?.stop(), postgres?.stop()]);
}
