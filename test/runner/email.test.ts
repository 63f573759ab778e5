// email.process-queue and email.daily-summary against real PostgreSQL and a
// real SMTP server peer on loopback.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { eventually } from "../support/eventually.ts";
import { createDatabase } from "../support/postgres.ts";
import { runTask } from "../support/runner.ts";
import { type SmtpPeer, startSmtpPeer } from "../support/smtp.ts";

const schema = readFileSync(new URL("../../task-runner/schema.sql", import.meta.url), "utf8");

describe("email tasks", () => {
  let databaseUrl: string;
  let db: pg.Client;
  let smtp: SmtpPeer;
  let env: Record<string, string>;

  beforeAll(async () => {
    databaseUrl = await createDatabase(inject("postgresUrl"), "email_test", schema);
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    smtp = await startSmtpPeer();
    env = { DATABASE_URL: databaseUrl, SMTP_URL: smtp.url };
  });
  afterAll(async () => {
    await db.end();
    await smtp.close();
  });
  beforeEach(async () => {
    await db.query("TRUNCATE email_queue, email_digest_log");
    await db.query("DROP TABLE IF EXISTS notifications");
    smtp.messages.length = 0;
    smtp.rejectRecipients.clear();
  });

  async function enqueue(
    n: number,
    recipient = (i: number) => `user${i}@example.com`,
  ): Promise<void> {
    for (let i = 0; i < n; i++) {
      await db.query(
        "INSERT INTO email_queue (recipient, subject, body_text) VALUES ($1, $2, $3)",
        [recipient(i), `Hello ${i}`, `Body ${i}`],
      );
    }
  }

  it("process-queue sends pending emails and marks them sent", async () => {
    await enqueue(3);
    const run = await runTask("email.process-queue", { from: "noreply@example.com" }, { env });
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({
      outcome: "succeeded",
      claimed: 3,
      sent: 3,
      retrying: 0,
      failed: 0,
    });
    expect(smtp.messages.map((m) => m.to[0]).sort()).toEqual([
      "user0@example.com",
      "user1@example.com",
      "user2@example.com",
    ]);
    expect(smtp.messages[0]?.raw).toContain("Subject: Hello");
    const { rows } = await db.query("SELECT status, attempts FROM email_queue");
    expect(rows.every((r) => r.status === "sent" && r.attempts === 1)).toBe(true);
  });

  it("process-queue run twice (even at once) sends each email once", async () => {
    await enqueue(20);
    const [a, b] = await Promise.all([
      runTask("email.process-queue", { batchSize: 20, from: "x@example.com" }, { env }),
      runTask("email.process-queue", { batchSize: 20, from: "x@example.com" }, { env }),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(a.result.sent + b.result.sent).toBe(20);
    expect(smtp.messages).toHaveLength(20);
    const again = await runTask("email.process-queue", { from: "x@example.com" }, { env });
    expect(again.result.claimed).toBe(0);
  });

  it("process-queue retries a rejected email with backoff, then gives up after maxAttempts", async () => {
    await enqueue(1, () => "bounce@example.com");
    smtp.rejectRecipients.add("bounce@example.com");
    const first = await runTask(
      "email.process-queue",
      { maxAttempts: 2, retryBackoff: "1s", from: "x@example.com" },
      { env },
    );
    expect(first.result).toMatchObject({ retrying: 1, failed: 0 });
    let row = (
      await db.query(
        "SELECT status, attempts, next_attempt_at > now() AS later, last_error FROM email_queue",
      )
    ).rows[0];
    expect(row).toMatchObject({ status: "pending", attempts: 1, later: true });
    expect(row.last_error).toContain("mailbox unavailable");
    // The retry is due once its backoff has passed by the database's clock, which the task reads.
    await eventually(
      async () =>
        (await db.query("SELECT next_attempt_at <= now() AS due FROM email_queue")).rows[0].due
          ? true
          : undefined,
      { intervalMs: 100, what: "the retry to be due" },
    );
    const second = await runTask(
      "email.process-queue",
      { maxAttempts: 2, retryBackoff: "1s", from: "x@example.com" },
      { env },
    );
    expect(second.result).toMatchObject({ failed: 1 });
    row = (await db.query("SELECT status, attempts FROM email_queue")).rows[0];
    expect(row).toMatchObject({ status: "failed", attempts: 2 });
  });

  it("process-queue exits 75 when SMTP is down and leaves the emails queued", async () => {
    await enqueue(2);
    const [closed] = await freePorts(1);
    const run = await runTask(
      "email.process-queue",
      { from: "x@example.com", sendTimeout: "2s" },
      { env: { ...env, SMTP_URL: `smtp://127.0.0.1:${closed}` } },
    );
    expect(run.code).toBe(75);
    expect(run.stderr).toContain("SMTP server unreachable");
    const { rows } = await db.query("SELECT status, attempts FROM email_queue");
    expect(rows.every((r) => r.status === "pending" && r.attempts === 0)).toBe(true);
  });

  it("process-queue exits 75 when the database is down, 64 on bad params", async () => {
    const [closed] = await freePorts(1);
    expect(
      (
        await runTask(
          "email.process-queue",
          {},
          { env: { ...env, DATABASE_URL: `postgres://x@127.0.0.1:${closed}/x` } },
        )
      ).code,
    ).toBe(75);
    const bad = await runTask(
      "email.process-queue",
      { batchSize: 0, table: "drop table;" },
      { env },
    );
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("params.batchSize");
    expect(bad.stderr).toContain("params.table: must be a SQL identifier");
  });

  it("process-queue stops on SIGTERM after the email in hand and releases the rest", async () => {
    await enqueue(200);
    const run = await runTask(
      "email.process-queue",
      { batchSize: 200, from: "x@example.com" },
      { env, sigtermWhen: "sent email" },
    );
    expect(run.code).toBe(75);
    expect(run.result.outcome).toBe("stopped");
    const counts = (
      await db.query("SELECT status, count(*)::int AS n FROM email_queue GROUP BY status")
    ).rows;
    const sent = counts.find((c) => c.status === "sent")?.n ?? 0;
    expect(sent).toBe(run.result.sent);
    expect(sent).toBe(smtp.messages.length);
    expect(counts.find((c) => c.status === "sending")).toBeUndefined();
    expect(run.result.released).toBe(200 - sent);
  });

  async function notifications(): Promise<void> {
    await db.query("CREATE TABLE notifications (recipient text, title text, body text, url text)");
    await db.query(`INSERT INTO notifications VALUES
      ('ann@example.com', 'Invoice paid', 'Invoice 42 was paid', 'https://app.example.com/i/42'),
      ('ann@example.com', 'New comment <b>', NULL, NULL),
      ('bob@example.com', 'Welcome', 'Glad to have you', NULL)`);
  }
  const digest = {
    query: "SELECT recipient, title, body, url FROM notifications",
    from: "digest@example.com",
    subject: "Your day",
  };

  it("daily-summary sends one digest per recipient with text and HTML", async () => {
    await notifications();
    const run = await runTask("email.daily-summary", digest, { env });
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({ recipients: 2, sent: 2, alreadySent: 0, items: 3 });
    const ann = smtp.messages.find((m) => m.to[0] === "ann@example.com");
    expect(ann?.raw).toContain("Invoice paid");
    expect(ann?.raw).toContain("text/html");
    // HTML part is quoted-printable: undo soft line breaks before looking for the escaped title.
    expect(ann?.raw.replace(/=\r\n/g, "")).toContain("New comment &#60;b&#62;");
  });

  it("daily-summary run twice the same day sends nothing twice", async () => {
    await notifications();
    await runTask("email.daily-summary", digest, { env });
    const again = await runTask("email.daily-summary", digest, { env });
    expect(again.code).toBe(0);
    expect(again.result).toMatchObject({ sent: 0, alreadySent: 2 });
    expect(smtp.messages).toHaveLength(2);
  });

  it("daily-summary exits 75 with SMTP down (nothing recorded as sent) and 65 on a query without recipient", async () => {
    await notifications();
    const [closed] = await freePorts(1);
    const down = await runTask("email.daily-summary", digest, {
      env: { ...env, SMTP_URL: `smtp://127.0.0.1:${closed}` },
    });
    expect(down.code).toBe(75);
    expect((await db.query("SELECT count(*)::int AS n FROM email_digest_log")).rows[0].n).toBe(0);
    const bad = await runTask(
      "email.daily-summary",
      { ...digest, query: "SELECT title FROM notifications" },
      { env },
    );
    expect(bad.code).toBe(65);
    expect(bad.stderr).toContain("must return text columns recipient and title");
    expect((await runTask("email.daily-summary", { query: "" }, { env })).code).toBe(64);
  });

  it("daily-summary stops on SIGTERM between recipients", async () => {
    await db.query("CREATE TABLE notifications (recipient text, title text, body text, url text)");
    await db.query(
      "INSERT INTO notifications SELECT 'r' || g || '@example.com', 'item', NULL, NULL FROM generate_series(1, 300) g",
    );
    const run = await runTask("email.daily-summary", digest, { env, sigtermWhen: "sent digest" });
    expect(run.code).toBe(75);
    const logged = (await db.query("SELECT count(*)::int AS n FROM email_digest_log")).rows[0].n;
    expect(logged).toBe(smtp.messages.length);
    expect(logged).toBeLessThan(300);
  });
});
