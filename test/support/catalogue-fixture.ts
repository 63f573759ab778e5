// What every catalogue task needs to do real work, on the host where pods on
// the real node reach it (the node's bridge address): the handlers' tables
// with seed data, an SMTP sink, HTTP peers (an iCalendar feed, a webhook
// receiver, a Notion API stand-in), a folder served to pods as a
// PersistentVolume, and one BackgroundTask per task type pointing at them.
// Shared by the real-node end-to-end tests and `make demo`.
import { chownSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { type SmtpPeer, startSmtpPeer } from "./smtp.ts";

const schema = readFileSync(new URL("../../task-runner/schema.sql", import.meta.url), "utf8");

/** The runner's user in the image: files it must delete or write belong to it. */
const RUNNER_UID = 65532;

export interface WebhookCall {
  path: string;
  body: string;
}

export interface CataloguePeers {
  smtp: SmtpPeer;
  /** http://<host>:<port> of the HTTP peer. */
  httpBase: string;
  webhooks: WebhookCall[];
  /** Requests the HTTP peer received, "METHOD path". */
  requests: string[];
  close(): Promise<void>;
}

function ics(): string {
  const stamp = (d: Date) =>
    d
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d{3}/, "");
  const day = new Date(Math.floor(Date.now() / 86_400_000) * 86_400_000 + 86_400_000);
  const event = (uid: string, summary: string, start: Date) =>
    [
      "BEGIN:VEVENT",
      `UID:${uid}`,
      `DTSTAMP:${stamp(new Date())}`,
      `DTSTART:${stamp(start)}`,
      `DTEND:${stamp(new Date(start.getTime() + 3_600_000))}`,
      `SUMMARY:${summary}`,
      "END:VEVENT",
    ].join("\r\n");
  return [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//Nightshift//EN",
    event("offsite@example.com", "Team offsite", new Date(day.getTime() + 9 * 3_600_000)),
    event("retro@example.com", "Retrospective", new Date(day.getTime() + 14 * 3_600_000)),
    "END:VCALENDAR",
    "",
  ].join("\r\n");
}

/** A page as the Notion API lists it, titled "Page i". */
export function notionPage(i: number) {
  return {
    object: "page",
    id: `page-${i}`,
    url: `https://www.notion.so/page-${i}`,
    created_time: "2026-01-01T00:00:00.000Z",
    last_edited_time: "2026-11-01T00:00:00.000Z",
    archived: false,
    in_trash: false,
    parent: { type: "data_source_id", data_source_id: "ds-1" },
    properties: {
      Name: {
        id: "title",
        type: "title",
        title: [{ type: "text", plain_text: `Page ${i}`, text: { content: `Page ${i}` } }],
      },
    },
  };
}

const notionPages = Array.from({ length: 3 }, (_, i) => notionPage(i));

/** Starts the SMTP sink and the HTTP peer on `host`. */
export async function startCataloguePeers(host: string): Promise<CataloguePeers> {
  const smtp = await startSmtpPeer(host);
  const webhooks: WebhookCall[] = [];
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      const path = req.url ?? "/";
      requests.push(`${req.method} ${path}`);
      const json = (status: number, payload: unknown) =>
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(payload));
      if (path === "/calendar/team.ics")
        return res.writeHead(200, { "content-type": "text/calendar" }).end(ics());
      if (path.startsWith("/hooks/")) {
        webhooks.push({ path, body });
        return json(200, { received: true });
      }
      if (path === "/notion/v1/databases/db-1")
        return json(200, {
          object: "database",
          id: "db-1",
          data_sources: [{ id: "ds-1", name: "Tasks" }],
        });
      if (path === "/notion/v1/data_sources/ds-1/query")
        return json(200, {
          object: "list",
          results: notionPages,
          has_more: false,
          next_cursor: null,
          type: "page_or_data_source",
          page_or_data_source: {},
        });
      json(404, { object: "error", status: 404, code: "object_not_found", message: path });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const httpBase = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    smtp,
    httpBase,
    webhooks,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await smtp.close();
    },
  };
}

/** The handlers' tables with work waiting for every task. */
export async function seedCatalogueDatabase(url: string, httpBase: string): Promise<void> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    await db.query(schema);
    await db.query(`
      INSERT INTO email_queue (recipient, subject, body_text) VALUES
        ('ann@example.com', 'Your invoice', 'Invoice #1 is ready'),
        ('bob@example.com', 'Welcome', 'Welcome aboard');
      CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, email text NOT NULL);
      INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 50) g;
      CREATE TABLE IF NOT EXISTS documents (id int PRIMARY KEY, title text NOT NULL);
      INSERT INTO documents VALUES (1, 'Plan'), (2, 'Budget');
      CREATE TABLE IF NOT EXISTS notifications (user_id int, title text, body text, url text, created_at timestamptz DEFAULT now());
      INSERT INTO notifications (user_id, title, body) VALUES (1, 'New comment', 'On your plan'), (1, 'New like', 'On your budget');
      INSERT INTO sessions SELECT 'expired-' || g, '{}', now() - interval '2 days' FROM generate_series(1, 40) g;
      INSERT INTO sessions SELECT 'live-' || g, '{}', now() + interval '1 day' FROM generate_series(1, 10) g;
    `);
    await db.query(
      `INSERT INTO reminders (channel, recipient, subject, message, due_at, rrule) VALUES
        ('email', 'ann@example.com', 'Dentist', 'Tomorrow 9:00', now() - interval '1 minute', NULL),
        ('webhook', $1, 'Standup', 'In 5 minutes', now() - interval '1 minute', 'FREQ=DAILY')`,
      [`${httpBase}/hooks/standup`],
    );
  } finally {
    await db.end();
  }
}

/**
 * The folder behind the catalogue's PersistentVolume: stale and fresh temp
 * files for files.cleanup-temp, user files for files.backup, and an empty
 * backups folder, all owned by the runner's user.
 */
export function prepareDataFolder(root: string): void {
  const dirs = ["tmp", "user-files/reports", "backups"];
  for (const dir of dirs) mkdirSync(join(root, dir), { recursive: true });
  const old = new Date(Date.now() - 3 * 86_400_000);
  for (const name of ["upload-1.part", "upload-2.part", "export.csv.tmp"]) {
    writeFileSync(join(root, "tmp", name), "stale");
    utimesSync(join(root, "tmp", name), old, old);
  }
  writeFileSync(join(root, "tmp", "fresh.part"), "still being written");
  writeFileSync(join(root, "user-files", "reports", "q3.txt"), "Q3 numbers");
  writeFileSync(join(root, "user-files", "notes.txt"), "remember the milk");
  for (const path of [
    root,
    ...dirs.map((d) => join(root, d)),
    join(root, "user-files"),
    ...["upload-1.part", "upload-2.part", "export.csv.tmp", "fresh.part"].map((f) =>
      join(root, "tmp", f),
    ),
    join(root, "user-files", "reports", "q3.txt"),
    join(root, "user-files", "notes.txt"),
  ])
    chownSync(path, RUNNER_UID, RUNNER_UID);
}

/** A PersistentVolume on the host folder (the real node is this machine) and its claim. */
export function dataVolume(namespace: string, hostFolder: string, nodeName: string): object[] {
  const pvName = `${namespace}-data`;
  return [
    {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: pvName },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Retain",
        storageClassName: "",
        claimRef: { namespace, name: "data" },
        local: { path: hostFolder },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              {
                matchExpressions: [
                  { key: "kubernetes.io/hostname", operator: "In", values: [nodeName] },
                ],
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "data", namespace },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: "",
        volumeName: pvName,
        resources: { requests: { storage: "1Gi" } },
      },
    },
  ];
}

export interface CatalogueEndpoints {
  /** PostgreSQL URL as pods see it. */
  databaseUrl: string;
  smtpUrl: string;
  httpBase: string;
}

/**
 * The connection Secret and one BackgroundTask per catalogue task type, at
 * their real schedules, or all at `schedule` (tests: a date that never comes,
 * so only run-now runs happen).
 */
export function catalogueManifests(
  namespace: string,
  at: CatalogueEndpoints,
  schedule?: string,
): object[] {
  const connections = { secretRef: { name: "app-connections" } };
  const data = {
    volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
    volumeMounts: [{ name: "data", mountPath: "/data" }],
  };
  const bgt = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: { name, namespace },
    spec: schedule ? { ...spec, schedule } : spec,
  });
  return [
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "app-connections", namespace },
      stringData: {
        DATABASE_URL: at.databaseUrl,
        SMTP_URL: at.smtpUrl,
        NOTION_TOKEN: "secret_demo",
      },
    },
    bgt("email-process-queue", {
      task: "email.process-queue",
      params: { from: "no-reply@example.com" },
      envFrom: [connections],
    }),
    bgt("email-daily-summary", {
      task: "email.daily-summary",
      params: {
        from: "digest@example.com",
        query:
          "select u.email as recipient, n.title, n.body, n.url from notifications n join users u on u.id = n.user_id",
      },
      envFrom: [connections],
    }),
    bgt("files-cleanup-temp", {
      task: "files.cleanup-temp",
      params: { paths: ["/data/tmp"], olderThan: "24h" },
      ...data,
    }),
    bgt("files-backup", {
      task: "files.backup",
      params: {
        directories: ["/data/user-files"],
        tables: ["users", "documents"],
        destination: "/data/backups",
        keep: 3,
      },
      envFrom: [connections],
      ...data,
    }),
    bgt("sync-calendar", {
      task: "sync.calendar",
      params: { feeds: [{ name: "team", url: `${at.httpBase}/calendar/team.ics` }] },
      envFrom: [connections],
    }),
    bgt("sync-notion", {
      task: "sync.notion",
      params: { databases: ["db-1"], baseUrl: `${at.httpBase}/notion` },
      envFrom: [connections],
    }),
    bgt("maintenance-optimize-database", {
      task: "maintenance.optimize-database",
      params: { analyze: true, tables: ["sessions", "reminders"] },
      envFrom: [connections],
    }),
    bgt("maintenance-cleanup-sessions", {
      task: "maintenance.cleanup-sessions",
      params: { gracePeriod: "1h", batchSize: 1000 },
      envFrom: [connections],
    }),
    bgt("reminders-dispatch", {
      task: "reminders.dispatch",
      params: { from: "reminders@example.com" },
      envFrom: [connections],
    }),
    bgt("http-heartbeat", {
      task: "http.request",
      schedule: "H * * * *",
      params: { url: `${at.httpBase}/hooks/heartbeat`, method: "POST", body: '{"ok":true}' },
    }),
  ];
}
