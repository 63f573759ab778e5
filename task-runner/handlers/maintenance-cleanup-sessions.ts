// maintenance.cleanup-sessions: delete expired sessions in small batches,
// each its own short transaction that skips rows others hold.
import type { z } from "zod";
import type { maintenanceCleanupSessionsParams } from "../../crds/catalogue/maintenance.ts";
import { parseDuration } from "../../crds/duration.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify } from "../errors.ts";
import { connect, ident } from "../lib/db.ts";

type Params = z.output<typeof maintenanceCleanupSessionsParams>;

export async function maintenanceCleanupSessions(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const db = await connect(ctx);
  const table = ident(params.table);
  const column = ident(params.expiresColumn);
  let deleted = 0;
  let batches = 0;
  try {
    while (batches < params.maxBatches && !stopping(ctx)) {
      const result = await db.query(
        `DELETE FROM ${table} WHERE ctid IN (
           SELECT ctid FROM ${table} WHERE ${column} < now() - ($1::bigint * interval '1 millisecond')
           LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [parseDuration(params.gracePeriod), params.batchSize],
      );
      batches++;
      deleted += result.rowCount ?? 0;
      ctx.log.debug({ batch: batches, rows: result.rowCount }, "deleted batch");
      if ((result.rowCount ?? 0) < params.batchSize) break;
    }
  } catch (error) {
    throw classify(error, `deleting expired sessions from ${params.table}`);
  } finally {
    await db.end().catch(() => {});
  }
  return { deleted, batches, maxBatchesReached: batches >= params.maxBatches };
}
