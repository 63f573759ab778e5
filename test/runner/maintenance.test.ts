// maintenance.cleanup-sessions and maintenance.optimize-database on real PostgreSQL.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { eventually } from "../support/eventually.ts";
import { createDatabase } from "../support/postgres.ts";
import { runTask } from "../support/runner.ts";

const schema = readFileSync(new URL("../../task-runner/schema.sql", import.meta.url), "utf8");

describe("maintenance tasks", () => {
  let databaseUrl: string;
  let db: pg.Client;
  let env: Record<string, string>;
  let downUrl: string;

  beforeAll(async () => {
    databaseUrl = await createDatabase(inject("postgresUrl"), "maintenance_test", schema);
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    env = { DATABASE_URL: databaseUrl };
    // Autovacuum would race the task for the dead tuples this suite creates and leave it none to report.
    await db.query("ALTER TABLE sessions SET (autovacuum_enabled = off)");
    downUrl = `postgres://x@127.0.0.1:${(await freePorts(1))[0]}/x`;
  });
  afterAll(async () => {
    await db.end();
  });

  beforeEach(async () => {
    await db.query("TRUNCATE sessions");
    // 5000 expired two hours ago, 300 expired 10 minutes ago (inside the grace period), 200 live.
    await db.query(
      "INSERT INTO sessions SELECT 'old' || g, '{}', now() - interval '2 hours' FROM generate_series(1, 5000) g",
    );
    await db.query(
      "INSERT INTO sessions SELECT 'recent' || g, '{}', now() - interval '10 minutes' FROM generate_series(1, 300) g",
    );
    await db.query(
      "INSERT INTO sessions SELECT 'live' || g, '{}', now() + interval '1 day' FROM generate_series(1, 200) g",
    );
  });

  const count = async () =>
    (await db.query("SELECT count(*)::int AS n FROM sessions")).rows[0].n as number;

  it("cleanup-sessions deletes expired sessions past the grace period, in batches", async () => {
    const run = await runTask(
      "maintenance.cleanup-sessions",
      { gracePeriod: "1h", batchSize: 1000 },
      { env },
    );
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({ outcome: "succeeded", deleted: 5000, batches: 6 });
    expect(await count()).toBe(500);
  });

  it("cleanup-sessions is idempotent and bounded by maxBatches", async () => {
    const bounded = await runTask(
      "maintenance.cleanup-sessions",
      { batchSize: 1000, maxBatches: 2 },
      { env },
    );
    expect(bounded.result).toMatchObject({ deleted: 2000, maxBatchesReached: true });
    await runTask("maintenance.cleanup-sessions", {}, { env });
    const again = await runTask("maintenance.cleanup-sessions", {}, { env });
    expect(again.result.deleted).toBe(0);
    expect(await count()).toBe(500);
  });

  it("cleanup-sessions: 75 when the database is down, 78 for a missing table, 64 for bad params", async () => {
    expect(
      (await runTask("maintenance.cleanup-sessions", {}, { env: { DATABASE_URL: downUrl } })).code,
    ).toBe(75);
    const missing = await runTask(
      "maintenance.cleanup-sessions",
      { table: "no_such_table" },
      { env },
    );
    expect(missing.code).toBe(78);
    expect(missing.stderr).toContain("no_such_table");
    const bad = await runTask("maintenance.cleanup-sessions", { gracePeriod: "1 hour" }, { env });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("params.gracePeriod");
  });

  it("cleanup-sessions stops on SIGTERM after the batch in hand", async () => {
    const run = await runTask(
      "maintenance.cleanup-sessions",
      { batchSize: 10, maxBatches: 10_000 },
      { env, sigtermWhen: "deleted batch" },
    );
    expect(run.code).toBe(75);
    expect(run.result.deleted).toBeGreaterThan(0);
    expect(run.result.deleted).toBeLessThan(5000);
    expect(await count()).toBe(5500 - run.result.deleted);
  });

  it("optimize-database vacuums and reports dead tuples before and after", async () => {
    // Deleted from a connection that then closes: a backend flushes its table statistics on exit.
    const deleter = new pg.Client({ connectionString: databaseUrl });
    await deleter.connect();
    await deleter.query("DELETE FROM sessions WHERE id LIKE 'old%'");
    await deleter.end();
    // The deleter's statistics reach the shared counters shortly after it exits; wait until they show.
    await eventually(
      async () => {
        const { rows } = await db.query(
          "SELECT n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relname = 'sessions'",
        );
        return (rows[0]?.dead ?? 0) >= 4000 ? true : undefined;
      },
      { intervalMs: 100, what: "4000 dead tuples in sessions' statistics" },
    );
    const run = await runTask(
      "maintenance.optimize-database",
      { tables: ["sessions"], reindex: true },
      { env },
    );
    expect(run.code).toBe(0);
    expect(run.result.tables).toBe(1);
    expect(run.result.deadTuplesBefore).toBeGreaterThanOrEqual(4000);
    expect(run.result.deadTuplesAfter).toBe(0);
    expect(run.result.report.sessions.before.bytes).toBeGreaterThan(0);
    const again = await runTask("maintenance.optimize-database", {}, { env });
    expect(again.code).toBe(0);
    expect(again.result.tables).toBeGreaterThanOrEqual(6);
  });

  it("optimize-database: 75 when the database is down, 64 for bad params, 75 on SIGTERM between tables", async () => {
    expect(
      (await runTask("maintenance.optimize-database", {}, { env: { DATABASE_URL: downUrl } })).code,
    ).toBe(75);
    const bad = await runTask("maintenance.optimize-database", { tables: ["a; drop"] }, { env });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("params.tables[0]");
    for (let i = 0; i < 30; i++) await db.query(`CREATE TABLE IF NOT EXISTS filler_${i} (id int)`);
    const stopped = await runTask(
      "maintenance.optimize-database",
      {},
      { env, sigtermWhen: "vacuumed table" },
    );
    expect(stopped.code).toBe(75);
    expect(stopped.result.skipped).toBeGreaterThan(0);
  });
});
