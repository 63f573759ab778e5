// maintenance.optimize-database: VACUUM (ANALYZE) and optionally REINDEX
// CONCURRENTLY, table by table, reporting dead tuples and sizes before and after.
import type pg from "pg";
import type { z } from "zod";
import type { maintenanceOptimizeDatabaseParams } from "../../crds/catalogue/maintenance.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify } from "../errors.ts";
import { connect, ident } from "../lib/db.ts";

type Params = z.output<typeof maintenanceOptimizeDatabaseParams>;

interface TableStats {
  deadTuples: number;
  bytes: number;
}

async function tableStats(db: pg.Client, table: string): Promise<TableStats> {
  await db.query("SELECT pg_stat_force_next_flush()").catch(() => {});
  const { rows } = await db.query(
    "SELECT coalesce(s.n_dead_tup, 0)::bigint AS dead, pg_total_relation_size($1::regclass)::bigint AS bytes FROM pg_stat_all_tables s WHERE s.relid = $1::regclass",
    [table],
  );
  return { deadTuples: Number(rows[0]?.dead ?? 0), bytes: Number(rows[0]?.bytes ?? 0) };
}

export async function maintenanceOptimizeDatabase(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const db = await connect(ctx, 0);
  const report: Record<string, { before: TableStats; after: TableStats }> = {};
  let skipped = 0;
  try {
    const tables =
      params.tables ??
      (
        await db.query(
          "SELECT format('%I.%I', schemaname, relname) AS name FROM pg_stat_user_tables ORDER BY 1",
        )
      ).rows.map((r) => r.name as string);
    for (const table of tables) {
      if (stopping(ctx)) {
        skipped++;
        continue;
      }
      const name = params.tables ? ident(table) : table;
      const before = await tableStats(db, name);
      await db.query(`VACUUM (${params.analyze ? "ANALYZE, " : ""}VERBOSE false) ${name}`);
      if (params.reindex) await db.query(`REINDEX TABLE CONCURRENTLY ${name}`);
      report[table] = { before, after: await tableStats(db, name) };
      ctx.log.debug({ table }, "vacuumed table");
    }
  } catch (error) {
    throw classify(error, "optimizing the database");
  } finally {
    await db.end().catch(() => {});
  }
  const sum = (pick: (t: { before: TableStats; after: TableStats }) => number) =>
    Object.values(report).reduce((n, t) => n + pick(t), 0);
  return {
    tables: Object.keys(report).length,
    skipped,
    deadTuplesBefore: sum((t) => t.before.deadTuples),
    deadTuplesAfter: sum((t) => t.after.deadTuples),
    bytesBefore: sum((t) => t.before.bytes),
    bytesAfter: sum((t) => t.after.bytes),
    report,
  };
}
