// Parameters of the database maintenance tasks (connection from DATABASE_URL).
import { z } from "zod";
import { duration } from "../duration.ts";
import { sqlIdentifier } from "./fields.ts";

export const maintenanceOptimizeDatabaseParams = z
  .object({
    tables: z
      .array(sqlIdentifier("A table to optimize."))
      .max(500)
      .optional()
      .describe("Tables to vacuum; all tables when omitted."),
    analyze: z.boolean().default(true).describe("Also update planner statistics (VACUUM ANALYZE)."),
    reindex: z.boolean().default(false).describe("Rebuild indexes with REINDEX CONCURRENTLY."),
  })
  .strict();

export const maintenanceCleanupSessionsParams = z
  .object({
    table: sqlIdentifier("Sessions table.").default("sessions"),
    expiresColumn: sqlIdentifier("Column holding each session's expiry time.").default(
      "expires_at",
    ),
    gracePeriod: duration("Sessions expired for less than this are kept.").default("1h"),
    batchSize: z
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe("Rows deleted per transaction, to keep locks short."),
    maxBatches: z
      .int()
      .min(1)
      .max(100_000)
      .default(100)
      .describe("Upper bound on batches per run."),
  })
  .strict();
