// sync.calendar: fetch iCalendar feeds, expand recurring events over the
// window, upsert one row per occurrence keyed by (feed, uid, start), and
// delete the feed's rows that are no longer in it — per feed, in one transaction.
import ICAL from "ical.js";
import type { z } from "zod";
import type { syncCalendarParams } from "../../crds/catalogue/sync.ts";
import { parseDuration } from "../../crds/duration.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify, configError, dataError, retryable } from "../errors.ts";
import { connect, ident, transaction } from "../lib/db.ts";

type Params = z.output<typeof syncCalendarParams>;

export interface Occurrence {
  uid: string;
  start: Date;
  end: Date;
  summary: string;
  description: string | null;
  location: string | null;
}

const MAX_OCCURRENCES_PER_EVENT = 1000;

/** Events of a feed, recurring ones expanded between `from` and `until`. */
export function occurrences(text: string, from: Date, until: Date): Occurrence[] {
  let component: ICAL.Component;
  try {
    component = new ICAL.Component(ICAL.parse(text));
  } catch (error) {
    throw dataError(`the feed is not valid iCalendar: ${(error as Error).message}`);
  }
  const out: Occurrence[] = [];
  const exceptions = new Map<string, ICAL.Event[]>();
  const events = component.getAllSubcomponents("vevent").map((v) => new ICAL.Event(v));
  for (const event of events) {
    if (event.isRecurrenceException())
      exceptions.set(event.uid, [...(exceptions.get(event.uid) ?? []), event]);
  }
  for (const event of events) {
    if (event.isRecurrenceException()) continue;
    for (const ex of exceptions.get(event.uid) ?? []) event.relateException(ex);
    const base = {
      uid: event.uid,
      summary: event.summary ?? "",
      description: event.description ?? null,
      location: event.location ?? null,
    };
    if (!event.isRecurring()) {
      const start = event.startDate.toJSDate();
      if (start <= until && event.endDate.toJSDate() >= from)
        out.push({ ...base, start, end: event.endDate.toJSDate() });
      continue;
    }
    const iterator = event.iterator();
    for (
      let i = 0, next = iterator.next();
      next && i < MAX_OCCURRENCES_PER_EVENT;
      i++, next = iterator.next()
    ) {
      const start = next.toJSDate();
      if (start > until) break;
      const details = event.getOccurrenceDetails(next);
      const end = details.endDate.toJSDate();
      if (end < from) continue;
      out.push({
        ...base,
        summary: details.item.summary ?? base.summary,
        start: details.startDate.toJSDate(),
        end,
      });
    }
  }
  return out;
}

async function fetchFeed(url: string, timeoutMs: number, ctx: TaskContext): Promise<string> {
  let response: Response;
  try {
    response = await fetch(url, {
      signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]),
      headers: { accept: "text/calendar" },
    });
  } catch (error) {
    throw classify(error, `fetching ${url}`);
  }
  if (response.status >= 500 || response.status === 429)
    throw retryable(`fetching ${url}: ${response.status}; the run will be retried`);
  if (!response.ok) throw configError(`fetching ${url}: ${response.status}; check the feed URL`);
  return response.text();
}

export async function syncCalendar(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const from = new Date(Date.now() - 86_400_000);
  const until = new Date(Date.now() + params.windowDays * 86_400_000);
  const texts: Array<{ name: string; text: string }> = [];
  for (const feed of params.feeds)
    texts.push({
      name: feed.name,
      text: await fetchFeed(feed.url, parseDuration(params.timeout), ctx),
    });
  const db = await connect(ctx);
  const table = ident(params.table);
  const result = { feeds: 0, occurrences: 0, upserted: 0, deleted: 0 };
  try {
    for (const { name, text } of texts) {
      if (stopping(ctx)) break;
      const items = occurrences(text, from, until);
      await transaction(db, async () => {
        for (const o of items) {
          const r = await db.query(
            `INSERT INTO ${table} (feed, uid, occurrence_start, occurrence_end, summary, description, location, synced_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())
             ON CONFLICT (feed, uid, occurrence_start) DO UPDATE SET occurrence_end = EXCLUDED.occurrence_end,
               summary = EXCLUDED.summary, description = EXCLUDED.description, location = EXCLUDED.location, synced_at = now()
             WHERE (${table}.occurrence_end, ${table}.summary, ${table}.description, ${table}.location)
               IS DISTINCT FROM (EXCLUDED.occurrence_end, EXCLUDED.summary, EXCLUDED.description, EXCLUDED.location)`,
            [name, o.uid, o.start, o.end, o.summary, o.description, o.location],
          );
          result.upserted += r.rowCount ?? 0;
        }
        const gone = await db.query(
          `DELETE FROM ${table} t WHERE t.feed = $1 AND t.occurrence_end >= $4 AND t.occurrence_start <= $5
             AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::timestamptz[]) AS s(uid, start) WHERE s.uid = t.uid AND s.start = t.occurrence_start)`,
          [name, items.map((o) => o.uid), items.map((o) => o.start), from, until],
        );
        result.deleted += gone.rowCount ?? 0;
      });
      result.feeds++;
      ctx.log.debug({ feed: name }, "synced feed");
      result.occurrences += items.length;
    }
  } catch (error) {
    throw classify(error, `syncing calendars into ${params.table}`);
  } finally {
    await db.end().catch(() => {});
  }
  return result;
}
