// Entry point of the Nightshift operator: `node operator/main.ts [flags]`.
import pino from "pino";
import { loadConfig } from "./config.ts";
import { Manager } from "./manager.ts";
import { CredentialSource } from "./runtime/credentials.ts";
import { KubeClient } from "./runtime/kube-client.ts";
import { loadConnection } from "./runtime/kubeconfig.ts";

let config: ReturnType<typeof loadConfig>;
let connection: ReturnType<typeof loadConnection>;
try {
  config = loadConfig(process.argv.slice(2), process.env);
  connection = loadConnection(process.env);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(2);
}

const log = pino({ level: config.logLevel, base: { identity: config.identity } });
log.info({ connection: connection.source, server: connection.server.host }, "API connection");
// One credential source (one exec plugin run, one token file read) for both clients.
const clientOptions = {
  credentials: new CredentialSource(connection.auth),
  userAgent: `nightshift-operator/${config.identity}`,
};
// Leases get their own client so lease renewals never queue behind reconcile traffic.
const manager = new Manager(
  config,
  new KubeClient(connection, clientOptions),
  new KubeClient(connection, clientOptions),
  log,
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  const force = setTimeout(() => {
    log.error("shutdown took longer than 20 s; exiting");
    process.exit(1);
  }, 20_000);
  force.unref();
  await manager.stop();
  log.info("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("unhandledRejection", (reason) =>
  log.error({ err: String(reason) }, "unhandled rejection"),
);

await manager.start();
log.info(
  {
    namespaces: config.namespaces.length ? config.namespaces : "all",
    workers: config.workers,
    runnerImage: config.runnerImage,
  },
  "operator started",
);
