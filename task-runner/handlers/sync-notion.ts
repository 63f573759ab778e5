// sync.notion: pull the pages of Notion databases (through each database's
// data sources, Notion API 2025-09-03) with the official client, which
// honours 429 Retry-After itself, and upsert them by page id.
import {
  APIResponseError,
  Client,
  isFullPage,
  RequestTimeoutError,
  UnknownHTTPResponseError,
} from "@notionhq/client";
import type { z } from "zod";
import type { syncNotionParams } from "../../crds/catalogue/sync.ts";
import { requireEnv, stopping, type TaskContext } from "../context.ts";
import { classify, configError, retryable, type TaskError } from "../errors.ts";
import { connect, ident } from "../lib/db.ts";

type Params = z.output<typeof syncNotionParams>;

function notionError(error: unknown, what: string): TaskError {
  if (error instanceof APIResponseError) {
    if (error.status === 401 || error.status === 403)
      return configError(`${what}: Notion refused the token (${error.code}); check NOTION_TOKEN`);
    if (error.status === 404)
      return configError(
        `${what}: not found (${error.code}); share the database with the integration or fix params.databases`,
      );
    if (error.status === 429 || error.status >= 500)
      return retryable(
        `${what}: Notion answered ${error.status} (${error.code}); the run will be retried`,
      );
  }
  if (error instanceof RequestTimeoutError) return retryable(`${what}: Notion timed out`);
  if (error instanceof UnknownHTTPResponseError && error.status >= 500)
    return retryable(`${what}: Notion answered ${error.status}`);
  return classify(error, what);
}

function titleOf(properties: Record<string, unknown>): string {
  for (const value of Object.values(properties)) {
    const p = value as { type?: string; title?: Array<{ plain_text?: string }> };
    if (p.type === "title") return (p.title ?? []).map((t) => t.plain_text ?? "").join("");
  }
  return "";
}

export async function syncNotion(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const notion = new Client({
    auth: requireEnv(ctx, "NOTION_TOKEN", "Notion integration token"),
    ...(params.baseUrl ? { baseUrl: params.baseUrl } : {}),
    timeoutMs: 30_000,
    // Within one run: a few quick retries (429 honours Retry-After); longer outages are the next run's job (exit 75).
    retry: { maxRetries: 3, initialRetryDelayMs: 500, maxRetryDelayMs: 5000 },
  });
  const db = await connect(ctx);
  const table = ident(params.table);
  const result = { databases: 0, dataSources: 0, pages: 0, upserted: 0, limitReached: false };
  try {
    for (const databaseId of params.databases) {
      if (stopping(ctx)) break;
      const database = await notion.databases
        .retrieve({ database_id: databaseId })
        .catch((e: unknown) => {
          throw notionError(e, `reading Notion database ${databaseId}`);
        });
      const sources = "data_sources" in database ? database.data_sources : [];
      for (const source of sources) {
        let cursor: string | undefined;
        do {
          if (stopping(ctx) || result.pages >= params.maxPages) {
            result.limitReached = result.pages >= params.maxPages;
            break;
          }
          const page = await notion.dataSources
            .query({
              data_source_id: source.id,
              page_size: params.pageSize,
              ...(cursor ? { start_cursor: cursor } : {}),
            })
            .catch((e: unknown) => {
              throw notionError(e, `querying Notion data source ${source.id}`);
            });
          for (const item of page.results) {
            if (!isFullPage(item as never)) continue;
            const p = item as unknown as {
              id: string;
              url: string;
              last_edited_time: string;
              archived?: boolean;
              in_trash?: boolean;
              properties: Record<string, unknown>;
            };
            result.pages++;
            const r = await db.query(
              `INSERT INTO ${table} (page_id, database_id, title, url, properties, last_edited_time, archived, synced_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, now())
               ON CONFLICT (page_id) DO UPDATE SET database_id = EXCLUDED.database_id, title = EXCLUDED.title, url = EXCLUDED.url,
                 properties = EXCLUDED.properties, last_edited_time = EXCLUDED.last_edited_time, archived = EXCLUDED.archived, synced_at = now()
               WHERE ${table}.last_edited_time IS DISTINCT FROM EXCLUDED.last_edited_time OR ${table}.archived IS DISTINCT FROM EXCLUDED.archived`,
              [
                p.id,
                databaseId,
                titleOf(p.properties),
                p.url,
                JSON.stringify(p.properties),
                p.last_edited_time,
                Boolean(p.archived || p.in_trash),
              ],
            );
            result.upserted += r.rowCount ?? 0;
          }
          ctx.log.debug({ dataSource: source.id, pages: result.pages }, "synced page batch");
          cursor = page.has_more ? (page.next_cursor ?? undefined) : undefined;
        } while (cursor);
        result.dataSources++;
      }
      result.databases++;
    }
  } catch (error) {
    throw classify(error, "syncing Notion");
  } finally {
    await db.end().catch(() => {});
  }
  return result;
}
