// Every catalogue task, run for real: the operator's CronJob, a run-now Job, a
// pod on the real node from the task-runner image built by `make images`,
// the handler working against PostgreSQL, an SMTP sink and HTTP peers on the
// host, and the runner's exit code and JSON result in status.lastRun.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  type CataloguePeers,
  catalogueManifests,
  dataVolume,
  prepareDataFolder,
  seedCatalogueDatabase,
  startCataloguePeers,
} from "../support/catalogue-fixture.ts";
import { kubectl } from "../support/cluster.ts";
import { operatorForSuite } from "../support/operator.ts";
import { createDatabase } from "../support/postgres.ts";
import { forPods, RUNNER_IMAGE, realNode, routeToRealNode } from "../support/real-node.ts";
import { type Obj, waitForStatus } from "../support/tasks.ts";

const TASKS = [
  "email-process-queue",
  "email-daily-summary",
  "files-cleanup-temp",
  "files-backup",
  "sync-calendar",
  "sync-notion",
  "maintenance-optimize-database",
  "maintenance-cleanup-sessions",
  "reminders-dispatch",
  "http-heartbeat",
];

describe("the task catalogue on the real node", () => {
  const suite = operatorForSuite("real-catalogue", { runnerImage: RUNNER_IMAGE });
  let peers: CataloguePeers;
  let databaseUrl: string;
  let dataFolder: string;
  const finished = new Map<string, Obj>();

  beforeAll(async () => {
    const node = realNode();
    routeToRealNode(suite.ns);
    databaseUrl = await createDatabase(inject("postgresUrl"), "real_catalogue");
    peers = await startCataloguePeers(node.hostAddress);
    await seedCatalogueDatabase(databaseUrl, peers.httpBase);
    dataFolder = mkdtempSync(join(tmpdir(), "nightshift-pv-"));
    prepareDataFolder(dataFolder);
    const manifests = [
      ...dataVolume(suite.ns, dataFolder, node.nodeName),
      ...catalogueManifests(
        suite.ns,
        {
          databaseUrl: forPods(databaseUrl),
          smtpUrl: peers.smtp.url,
          httpBase: peers.httpBase,
        },
        // Only the run-now runs: no scheduled run (reminders: every minute) interleaves.
        "0 0 1 1 *",
      ),
    ].map((m) => {
      const obj = m as Obj & { kind: string };
      // Start every task's first run now instead of waiting for its schedule.
      if (obj.kind === "BackgroundTask")
        obj.metadata.annotations = { "nightshift.dev/run-now": "first" };
      return obj;
    });
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: manifests }),
    );
    // All ten run at once; wait for every one to be recorded.
    await Promise.all(
      TASKS.map(async (name) => {
        const bgt = await waitForStatus(
          suite.ns,
          name,
          "first run recorded",
          (s) => (s.runs?.total ?? 0) >= 1,
          300_000,
        );
        finished.set(name, bgt);
      }),
    );
  }, 360_000);
  afterAll(async () => {
    await peers?.close();
    kubectl(["delete", "pv", `${suite.ns}-data`, "--ignore-not-found", "--wait=false"]);
    if (dataFolder) rmSync(dataFolder, { recursive: true, force: true });
  });

  function lastRun(name: string) {
    const run = finished.get(name)?.status?.lastRun;
    return { ...run, result: run?.message ? JSON.parse(run.message) : undefined };
  }

  it.each(TASKS)("%s ran in a real pod and recorded the runner's result", (name) => {
    const run = lastRun(name);
    expect(run, JSON.stringify(run)).toMatchObject({ outcome: "Succeeded", exitCode: 0 });
    expect(run.result).toMatchObject({ outcome: "succeeded" });
    const pods = JSON.parse(
      kubectl(["get", "pods", "-n", suite.ns, "-l", `job-name=${run.jobName}`, "-o", "json"]),
    ).items;
    expect(pods[0].spec.nodeName).toBe(realNode().nodeName);
    expect(pods[0].spec.containers[0].image).toBe(RUNNER_IMAGE);
  });

  it("email tasks delivered the queue, the digest and the due reminder to the SMTP peer", () => {
    expect(lastRun("email-process-queue").result).toMatchObject({ claimed: 2, sent: 2 });
    expect(lastRun("email-daily-summary").result).toMatchObject({ sent: 1 });
    const received = peers.smtp.messages.map(
      (m) => `${m.to[0]} ${m.raw.match(/^Subject: (.*)$/m)?.[1]}`,
    );
    expect(received).toEqual(
      expect.arrayContaining([
        "ann@example.com Your invoice",
        "bob@example.com Welcome",
        "ann@example.com Dentist",
        expect.stringMatching(/^user1@example.com /),
      ]),
    );
  });

  it("files.cleanup-temp deleted the stale files from the PersistentVolume, and only those", () => {
    expect(lastRun("files-cleanup-temp").result).toMatchObject({ filesDeleted: 3 });
    expect(readdirSync(join(dataFolder, "tmp"))).toEqual(["fresh.part"]);
  });

  it("files.backup wrote an archive, table exports and a manifest to the PersistentVolume", () => {
    const backups = readdirSync(join(dataFolder, "backups"));
    expect(backups).toHaveLength(1);
    const folder = join(dataFolder, "backups", backups[0] as string);
    const manifest = JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8"));
    expect(manifest.files.map((f: { file: string }) => f.file).sort()).toEqual([
      "dir-0-user-files.tar.gz",
      "table-documents.jsonl.gz",
      "table-users.jsonl.gz",
    ]);
    for (const f of manifest.files) expect(existsSync(join(folder, f.file))).toBe(true);
    expect(lastRun("files-backup").result).toMatchObject({ tables: { users: 50, documents: 2 } });
  });

  it("the database tasks left their work in PostgreSQL, and the webhooks reached the HTTP peer", async () => {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const q = async (sql: string) => (await db.query(sql)).rows;
      expect(await q("SELECT summary FROM calendar_events ORDER BY summary")).toEqual([
        { summary: "Retrospective" },
        { summary: "Team offsite" },
      ]);
      expect(await q("SELECT count(*)::int AS n FROM notion_pages")).toEqual([{ n: 3 }]);
      expect(await q("SELECT count(*)::int AS n FROM sessions")).toEqual([{ n: 10 }]);
      expect(lastRun("maintenance-cleanup-sessions").result).toMatchObject({ deleted: 40 });
      expect(lastRun("maintenance-optimize-database").result).toMatchObject({ tables: 2 });
      expect(await q("SELECT subject, status FROM reminders ORDER BY subject")).toEqual([
        { subject: "Dentist", status: "done" },
        { subject: "Standup", status: "pending" },
      ]);
    } finally {
      await db.end();
    }
    expect(peers.webhooks.map((w) => w.path).sort()).toEqual([
      "/hooks/heartbeat",
      "/hooks/standup",
    ]);
    expect(
      JSON.parse(peers.webhooks.find((w) => w.path === "/hooks/standup")?.body ?? "{}"),
    ).toMatchObject({
      subject: "Standup",
    });
  });
});
