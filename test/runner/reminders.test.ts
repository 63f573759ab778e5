// reminders.dispatch on real PostgreSQL, with a real SMTP peer and a real
// webhook receiver on loopback.
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { createDatabase } from "../support/postgres.ts";
import { runTask } from "../support/runner.ts";
import { type SmtpPeer, startSmtpPeer } from "../support/smtp.ts";

const schema = readFileSync(new URL("../../task-runner/schema.sql", import.meta.url), "utf8");

describe("reminders.dispatch", () => {
  let db: pg.Client;
  let smtp: SmtpPeer;
  let webhook: Server;
  let hookUrl: string;
  let hookStatus = 200;
  const hooks: Array<Record<string, unknown>> = [];
  let env: Record<string, string>;

  beforeAll(async () => {
    const url = await createDatabase(inject("postgresUrl"), "reminders_test", schema);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    smtp = await startSmtpPeer();
    webhook = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        if (hookStatus === 200) hooks.push(JSON.parse(body));
        res.writeHead(hookStatus).end();
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, "127.0.0.1", () => resolve()));
    hookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/remind`;
    env = { DATABASE_URL: url, SMTP_URL: smtp.url };
  });
  afterAll(async () => {
    await db.end();
    await smtp.close();
    webhook.close();
  });
  beforeEach(async () => {
    await db.query("TRUNCATE reminders");
    smtp.messages.length = 0;
    hooks.length = 0;
    hookStatus = 200;
  });

  async function seed(): Promise<void> {
    await db.query(`INSERT INTO reminders (channel, recipient, subject, message, due_at, rrule) VALUES
      ('email', 'ann@example.com', 'Dentist', 'Tomorrow 9:00', now() - interval '1 minute', NULL),
      ('webhook', '${hookUrl}', 'Standup', 'In 5 minutes', now() - interval '2 minutes', 'FREQ=DAILY'),
      ('email', 'bob@example.com', 'Later', 'Not yet', now() + interval '1 hour', NULL)`);
  }

  it("delivers due reminders, reschedules recurring ones and completes one-offs", async () => {
    await seed();
    const run = await runTask("reminders.dispatch", { from: "reminders@example.com" }, { env });
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({ due: 2, delivered: 2, rescheduled: 1, completed: 1 });
    expect(smtp.messages.map((m) => m.to[0])).toEqual(["ann@example.com"]);
    expect(hooks).toHaveLength(1);
    expect(hooks[0]).toMatchObject({ subject: "Standup" });
    const standup = (
      await db.query(
        "SELECT status, due_at > now() AS future, due_at - now() < interval '1 day' AS within_day, delivered_count FROM reminders WHERE subject = 'Standup'",
      )
    ).rows[0];
    expect(standup).toMatchObject({
      status: "pending",
      future: true,
      within_day: true,
      delivered_count: 1,
    });
  });

  it("never delivers one twice: a second run (even at once) delivers nothing more", async () => {
    await seed();
    const [a, b] = await Promise.all([
      runTask("reminders.dispatch", { from: "r@example.com" }, { env }),
      runTask("reminders.dispatch", { from: "r@example.com" }, { env }),
    ]);
    expect(a.result.delivered + b.result.delivered).toBe(2);
    const again = await runTask("reminders.dispatch", { from: "r@example.com" }, { env });
    expect(again.result.delivered).toBe(0);
    expect(smtp.messages).toHaveLength(1);
    expect(hooks).toHaveLength(1);
  });

  it("exits 75 and leaves reminders pending when the webhook or database is down; 64 on bad params", async () => {
    await seed();
    hookStatus = 503;
    const run = await runTask("reminders.dispatch", { from: "r@example.com" }, { env });
    expect(run.code).toBe(75);
    const pending = (
      await db.query("SELECT count(*)::int AS n FROM reminders WHERE status = 'pending'")
    ).rows[0].n;
    expect(pending).toBeGreaterThanOrEqual(2);
    const [closed] = await freePorts(1);
    expect(
      (
        await runTask(
          "reminders.dispatch",
          {},
          { env: { ...env, DATABASE_URL: `postgres://x@127.0.0.1:${closed}/x` } },
        )
      ).code,
    ).toBe(75);
    const bad = await runTask("reminders.dispatch", { batchSize: -1 }, { env });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("params.batchSize");
  });

  it("stops on SIGTERM after the reminder in hand, releasing the rest", async () => {
    await db.query(
      "INSERT INTO reminders (channel, recipient, subject, message, due_at) SELECT 'email', 'u' || g || '@example.com', 's', 'm', now() - interval '1 minute' FROM generate_series(1, 200) g",
    );
    const run = await runTask(
      "reminders.dispatch",
      { batchSize: 200, from: "r@example.com" },
      { env, sigtermWhen: "delivered reminder" },
    );
    expect(run.code).toBe(75);
    const states = (
      await db.query("SELECT status, count(*)::int AS n FROM reminders GROUP BY status")
    ).rows;
    expect(states.find((s) => s.status === "delivering")).toBeUndefined();
    expect(states.find((s) => s.status === "done")?.n).toBe(smtp.messages.length);
  });
});
