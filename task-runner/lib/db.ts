// A PostgreSQL client from DATABASE_URL, with connect and statement timeouts
// so a slow database makes a retryable failure rather than a hung run.
import pg from "pg";
import { requireEnv, type TaskContext } from "../context.ts";
import { classify } from "../errors.ts";

export async function connect(ctx: TaskContext, statementTimeoutMs = 60_000): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: requireEnv(ctx, "DATABASE_URL", "PostgreSQL connection URL"),
    connectionTimeoutMillis: 10_000,
    statement_timeout: statementTimeoutMs,
    application_name: "nightshift-task-runner",
  });
  client.on("error", (error) => ctx.log.warn({ err: error.message }, "database connection error"));
  try {
    await client.connect();
  } catch (error) {
    throw classify(error, "connecting to the database");
  }
  return client;
}

/** Runs fn inside a transaction; rolls back on any error. */
export async function transaction<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await fn();
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

/** Quotes a (possibly schema-qualified) identifier already checked by the params schema. */
export function ident(name: string): string {
  return name
    .split(".")
    .map((part) => `"${part.replaceAll('"', '""')}"`)
    .join(".");
}
