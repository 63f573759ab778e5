// `make demo`: Nightshift doing real work on this machine. A local control
// plane with a real node, the images built and imported, PostgreSQL with the
// catalogue's tables and seed data, an SMTP sink and HTTP peers that print
// what they receive, the operator, and one task per catalogue type started at
// once (run-now). Shows `kubectl get bgt` filling in and each effect as it
// happens, says when every task has run at least once, and keeps going
// (reminders every minute) until Ctrl-C, which removes everything.
// DEMO_EXIT_WHEN_READY=1 ends the demo once every task has run.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type LocalCluster, startLocalCluster } from "../test/controlplane/local-cluster.ts";
import { Monitoring } from "../test/controlplane/monitoring.ts";
import { realNodeNamespaceAnnotations } from "../test/controlplane/node-identity.ts";
import { freePorts } from "../test/controlplane/processes.ts";
import {
  type CataloguePeers,
  catalogueManifests,
  dataVolume,
  prepareDataFolder,
  seedCatalogueDatabase,
  startCataloguePeers,
} from "../test/support/catalogue-fixture.ts";
import { createDatabase, type PostgresServer, startPostgres } from "../test/support/postgres.ts";
import { localReference } from "./images/definitions.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const NAMESPACE = "nightshift-demo";
const bold = (text: string) => `\x1b[1m${text}\x1b[0m`;
const say = (line: string) => console.log(`${bold("[demo]")} ${line}`);
const effect = (line: string) => console.log(`${bold("  ->")} ${line}`);

let cluster: LocalCluster | undefined;
let postgres: PostgresServer | undefined;
let peers: CataloguePeers | undefined;
let operator: ChildProcess | undefined;
let monitoring: Monitoring | undefined;
let dataFolder: string | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say("stopping: operator, peers, PostgreSQL, real node, control plane");
    if (operator && operator.exitCode === null) {
      const exited = new Promise((resolve) => operator?.once("exit", resolve));
      operator.kill("SIGTERM");
      await exited;
    }
    await monitoring?.stop().catch(() => {});
    await peers?.close().catch(() => {});
    await cluster?.stop().catch((e) => say(`cluster stop: ${e}`));
    await postgres?.stop().catch(() => {});
    if (dataFolder) rmSync(dataFolder, { recursive: true, force: true });
    say("stopped; nothing left behind");
  }
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

/**
 * Starts the operator against the cluster. The one place that installs it:
 * swap this for a Helm install of charts/nightshift when the chart lands.
 */
function startOperator(kubeconfig: string, runnerImage: string, metricsPort: number): ChildProcess {
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      process.execPath,
      `${root}operator/main.ts`,
      "--leader-elect=false",
      `--metrics-address=127.0.0.1:${metricsPort}`,
      `--namespaces=${NAMESPACE}`,
      `--runner-image=${runnerImage}`,
      "--log-level=warn",
    ],
    { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ["ignore", "inherit", "inherit"] },
  );
  child.once("exit", (code) => {
    if (!stopping) {
      say(`operator exited with ${code}`);
      void stop(1);
    }
  });
  return child;
}

/** Prints what the peers and the data folder saw since the last call. */
function effectsReporter(peers: CataloguePeers, folder: string) {
  let mails = 0;
  let hooks = 0;
  const tmpFiles = new Set(readdirSync(join(folder, "tmp")));
  const backups = new Set<string>();
  return () => {
    for (const mail of peers.smtp.messages.slice(mails)) {
      const subject = /^Subject: (.*)$/m.exec(mail.raw)?.[1] ?? "";
      effect(`email received by the SMTP sink: to ${mail.to.join(", ")}: "${subject}"`);
    }
    mails = peers.smtp.messages.length;
    for (const hook of peers.webhooks.slice(hooks))
      effect(`webhook received on ${hook.path}: ${hook.body.slice(0, 100)}`);
    hooks = peers.webhooks.length;
    const now = new Set(readdirSync(join(folder, "tmp")));
    for (const gone of [...tmpFiles].filter((f) => !now.has(f)))
      effect(`file cleaned from the volume: /data/tmp/${gone}`);
    tmpFiles.clear();
    for (const f of now) tmpFiles.add(f);
    for (const backup of readdirSync(join(folder, "backups")))
      if (!backups.has(backup)) {
        backups.add(backup);
        const files = readdirSync(join(folder, "backups", backup));
        effect(`backup written to the volume: /data/backups/${backup} (${files.join(", ")})`);
      }
  };
}

try {
  const started = Date.now();
  cluster = await startLocalCluster({ log: (line) => say(`cluster: ${line}`) });
  const { controlPlane, node } = cluster;
  if (!node) {
    say(`the demo runs tasks for real and needs a real node: ${cluster.nodeUnavailable}`);
    await stop(1);
  }
  if (!node) throw new Error("unreachable");
  say(
    `control plane and real node ${node.nodeName} ready in ${((Date.now() - started) / 1000).toFixed(0)} s; KUBECONFIG=${controlPlane.kubeconfigPath}`,
  );
  controlPlane.kubectl([
    "apply",
    "--server-side",
    "-f",
    `${root}crds/nightshift.dev_backgroundtasks.yaml`,
  ]);
  controlPlane.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/backgroundtasks.nightshift.dev",
  ]);

  postgres = await startPostgres((line) => say(line), {
    listenAddresses: [node.hostAddress],
    trustNetworks: [node.identity.podCidr],
  });
  const databaseUrl = await createDatabase(postgres.url, "app");
  peers = await startCataloguePeers(node.hostAddress);
  await seedCatalogueDatabase(databaseUrl, peers.httpBase);
  dataFolder = mkdtempSync(join(tmpdir(), "nightshift-demo-data-"));
  prepareDataFolder(dataFolder);
  say(
    `PostgreSQL (2 queued emails, 40 expired sessions, 2 due reminders), SMTP sink ${peers.smtp.url}, HTTP peers ${peers.httpBase} (iCalendar feed, webhooks, Notion API), data volume ${dataFolder}`,
  );

  const runnerImage = localReference("nightshift/task-runner");
  const namespace = {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: NAMESPACE, annotations: realNodeNamespaceAnnotations() },
  };
  const manifests = [
    namespace,
    ...dataVolume(NAMESPACE, dataFolder, node.nodeName),
    ...catalogueManifests(NAMESPACE, {
      databaseUrl: databaseUrl.replace("127.0.0.1", node.hostAddress),
      smtpUrl: peers.smtp.url,
      httpBase: peers.httpBase,
    }),
  ].map((m) => {
    const obj = m as { kind: string; metadata: Record<string, unknown> };
    if (obj.kind === "BackgroundTask")
      obj.metadata.annotations = { "nightshift.dev/run-now": String(Date.now()) };
    return obj;
  });
  const [metricsPort] = await freePorts(1);
  operator = startOperator(controlPlane.kubeconfigPath, runnerImage, metricsPort ?? 0);
  monitoring = await Monitoring.start({
    kubeconfigPath: controlPlane.kubeconfigPath,
    binDir: cluster.binDir,
    operators: [`127.0.0.1:${metricsPort}`],
    kubeletNodes: [node.nodeName],
    log: (line) => say(line),
  });
  say(
    `kube-state-metrics and Prometheus (Nightshift's rules loaded): ${monitoring.prometheusUrl}/graph?g0.expr=${encodeURIComponent("nightshift_backgroundtask_runs_total")}  (also try ALERTS, nightshift_runs_total, nightshift_backgroundtask_phase)`,
  );
  controlPlane.kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({ apiVersion: "v1", kind: "List", items: manifests }),
  );
  say(`operator started; applied the catalogue to namespace ${NAMESPACE}, each task with run-now`);

  const report = effectsReporter(peers, dataFolder);
  let everyTaskRan = false;
  for (;;) {
    report();
    const table = controlPlane.kubectl(["get", "bgt", "-n", NAMESPACE]);
    console.log(
      `\n$ kubectl get bgt -n ${NAMESPACE}   (${new Date().toISOString().slice(11, 19)})\n${table}`,
    );
    const totals = controlPlane
      .kubectl([
        "get",
        "bgt",
        "-n",
        NAMESPACE,
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}={.status.runs.succeeded}/{.status.runs.total}{"\\n"}{end}',
      ])
      .trim()
      .split("\n");
    const ran = totals.filter((t) => /=\d*\/[1-9]/.test(t));
    if (!everyTaskRan && totals.length > 0 && ran.length === totals.length) {
      everyTaskRan = true;
      const succeeded = totals.filter((t) => /=[1-9]\d*\//.test(t)).length;
      report();
      say(
        bold(
          `every task has run at least once (${succeeded} of ${totals.length} succeeded). reminders-dispatch runs every minute; Ctrl-C to stop.`,
        ),
      );
      if (process.env.DEMO_EXIT_WHEN_READY === "1") await stop(succeeded === totals.length ? 0 : 1);
    }
    await new Promise((resolve) => setTimeout(resolve, everyTaskRan ? 20_000 : 3_000));
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  await stop(1);
}
