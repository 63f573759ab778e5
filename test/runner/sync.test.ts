// sync.calendar and sync.notion against HTTP servers on loopback serving real
// iCalendar files and Notion-shaped API responses, into real PostgreSQL.
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { notionPage } from "../support/catalogue-fixture.ts";
import { createDatabase } from "../support/postgres.ts";
import { runTask } from "../support/runner.ts";

const schema = readFileSync(new URL("../../task-runner/schema.sql", import.meta.url), "utf8");

function ics(events: string[]): string {
  return [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//Nightshift tests//EN",
    ...events,
    "END:VCALENDAR",
    "",
  ].join("\r\n");
}
function stamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}
function vevent(uid: string, summary: string, start: Date, extra: string[] = []): string {
  const end = new Date(start.getTime() + 3_600_000);
  return [
    "BEGIN:VEVENT",
    `UID:${uid}`,
    `DTSTAMP:${stamp(new Date())}`,
    `DTSTART:${stamp(start)}`,
    `DTEND:${stamp(end)}`,
    `SUMMARY:${summary}`,
    ...extra,
    "END:VEVENT",
  ].join("\r\n");
}

async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; base: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe("sync tasks", () => {
  let db: pg.Client;
  let env: Record<string, string>;
  let feeds: Record<string, { status: number; body: string; delayMs?: number }>;
  let feedRequested: (url: string) => void = () => {};
  let calendar: { server: Server; base: string };
  const tomorrow = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 + 86_400_000);

  beforeAll(async () => {
    const url = await createDatabase(inject("postgresUrl"), "sync_test", schema);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    env = { DATABASE_URL: url, NOTION_TOKEN: "secret_test" };
    calendar = await listen((req, res) => {
      const feed = feeds[req.url ?? ""] ?? { status: 404, body: "no such feed" };
      feedRequested(req.url ?? "");
      setTimeout(
        () => res.writeHead(feed.status, { "content-type": "text/calendar" }).end(feed.body),
        feed.delayMs ?? 0,
      );
    });
  });
  afterAll(async () => {
    await db.end();
    calendar.server.closeAllConnections();
    calendar.server.close();
  });
  beforeEach(async () => {
    await db.query("TRUNCATE calendar_events, notion_pages");
    feeds = {
      "/team.ics": {
        status: 200,
        body: ics([
          vevent("standup@example.com", "Standup", tomorrow, ["RRULE:FREQ=DAILY;COUNT=5"]),
          vevent("offsite@example.com", "Offsite", new Date(tomorrow.getTime() + 3 * 86_400_000)),
        ]),
      },
    };
  });

  const events = async () =>
    (
      await db.query(
        "SELECT uid, summary, occurrence_start FROM calendar_events ORDER BY occurrence_start",
      )
    ).rows;

  it("calendar: expands recurring events and upserts every occurrence", async () => {
    const run = await runTask(
      "sync.calendar",
      { feeds: [{ name: "team", url: `${calendar.base}/team.ics` }] },
      { env },
    );
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({
      outcome: "succeeded",
      feeds: 1,
      occurrences: 6,
      upserted: 6,
      deleted: 0,
    });
    const rows = await events();
    expect(rows.filter((r) => r.uid === "standup@example.com")).toHaveLength(5);
    expect(rows.map((r) => r.summary)).toContain("Offsite");
  });

  it("calendar: a second run changes nothing; events gone from the feed are deleted", async () => {
    const params = { feeds: [{ name: "team", url: `${calendar.base}/team.ics` }] };
    await runTask("sync.calendar", params, { env });
    const again = await runTask("sync.calendar", params, { env });
    expect(again.result).toMatchObject({ upserted: 0, deleted: 0 });
    feeds["/team.ics"] = {
      status: 200,
      body: ics([
        vevent("standup@example.com", "Standup (moved)", tomorrow, ["RRULE:FREQ=DAILY;COUNT=2"]),
      ]),
    };
    const changed = await runTask("sync.calendar", params, { env });
    expect(changed.result).toMatchObject({ occurrences: 2, upserted: 2, deleted: 4 });
    expect((await events()).map((r) => r.summary)).toEqual(["Standup (moved)", "Standup (moved)"]);
  });

  it("calendar: 75 when the feed server fails or is down, 65 for a broken feed, 64 for bad params", async () => {
    feeds["/broken.ics"] = { status: 502, body: "bad gateway" };
    expect(
      (
        await runTask(
          "sync.calendar",
          { feeds: [{ name: "x", url: `${calendar.base}/broken.ics` }] },
          { env },
        )
      ).code,
    ).toBe(75);
    const [closed] = await freePorts(1);
    expect(
      (
        await runTask(
          "sync.calendar",
          { feeds: [{ name: "x", url: `http://127.0.0.1:${closed}/a.ics` }] },
          { env },
        )
      ).code,
    ).toBe(75);
    feeds["/garbage.ics"] = { status: 200, body: "this is not a calendar" };
    const garbage = await runTask(
      "sync.calendar",
      { feeds: [{ name: "x", url: `${calendar.base}/garbage.ics` }] },
      { env },
    );
    expect(garbage.code).toBe(65);
    expect(garbage.stderr).toContain("not valid iCalendar");
    const bad = await runTask(
      "sync.calendar",
      { feeds: [{ name: "Bad Name", url: "file:///etc/passwd" }] },
      { env },
    );
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("params.feeds[0].name");
    expect(bad.stderr).toContain("params.feeds[0].url");
  });

  it("calendar: stops on SIGTERM while fetching, writing nothing", async () => {
    feeds["/slow.ics"] = {
      ...(feeds["/team.ics"] as { status: number; body: string }),
      delayMs: 5000,
    };
    const fetching = new Promise<void>((resolve) => {
      feedRequested = (url) => url === "/slow.ics" && resolve();
    });
    const run = await runTask(
      "sync.calendar",
      { feeds: [{ name: "slow", url: `${calendar.base}/slow.ics` }] },
      { env, sigtermOn: fetching },
    );
    expect(run.code).toBe(75);
    expect(await events()).toEqual([]);
  });

  describe("notion", () => {
    let notion: { server: Server; base: string };
    const requests: string[] = [];
    let rateLimitNext = 0;
    let failing = false;
    const pages = Array.from({ length: 7 }, (_, i) => notionPage(i));

    beforeAll(async () => {
      notion = await listen((req, res) => {
        let body = "";
        req.on("data", (c) => {
          body += c;
        });
        req.on("end", () => {
          requests.push(
            `${req.method} ${req.url} ${req.headers.authorization} ${req.headers["notion-version"]}`,
          );
          const json = (status: number, payload: unknown, headers: Record<string, string> = {}) =>
            res
              .writeHead(status, { "content-type": "application/json", ...headers })
              .end(JSON.stringify(payload));
          if (failing)
            return json(503, {
              object: "error",
              status: 503,
              code: "service_unavailable",
              message: "down",
            });
          if (rateLimitNext > 0) {
            rateLimitNext--;
            return json(
              429,
              { object: "error", status: 429, code: "rate_limited", message: "slow down" },
              { "retry-after": "1" },
            );
          }
          if (req.url === "/v1/databases/db-1")
            return json(200, {
              object: "database",
              id: "db-1",
              data_sources: [{ id: "ds-1", name: "Tasks" }],
            });
          if (req.url === "/v1/databases/missing")
            return json(404, {
              object: "error",
              status: 404,
              code: "object_not_found",
              message: "not shared",
            });
          if (req.url === "/v1/data_sources/ds-1/query") {
            const { start_cursor: cursor, page_size: size } = JSON.parse(body || "{}");
            const from = Number(cursor ?? 0);
            const slice = pages.slice(from, from + size);
            const next = from + size < pages.length ? String(from + size) : null;
            return json(200, {
              object: "list",
              results: slice,
              has_more: next !== null,
              next_cursor: next,
              type: "page_or_data_source",
              page_or_data_source: {},
            });
          }
          json(404, { object: "error", status: 404, code: "object_not_found", message: req.url });
        });
      });
    });
    afterAll(() => {
      notion.server.closeAllConnections();
      notion.server.close();
    });
    beforeEach(() => {
      requests.length = 0;
      rateLimitNext = 0;
      failing = false;
    });

    const params = () => ({ databases: ["db-1"], baseUrl: notion.base, pageSize: 3 });

    it("pulls every page through pagination and upserts it", async () => {
      const run = await runTask("sync.notion", params(), { env });
      expect(run.code).toBe(0);
      expect(run.result).toMatchObject({ databases: 1, dataSources: 1, pages: 7, upserted: 7 });
      expect(requests.filter((r) => r.startsWith("POST /v1/data_sources/ds-1/query"))).toHaveLength(
        3,
      );
      expect(requests[0]).toContain("Bearer secret_test");
      const titles = (await db.query("SELECT title FROM notion_pages ORDER BY page_id")).rows.map(
        (r) => r.title,
      );
      expect(titles).toEqual(pages.map((_, i) => `Page ${i}`));
    });

    it("is idempotent: a second run updates nothing", async () => {
      await runTask("sync.notion", params(), { env });
      const again = await runTask("sync.notion", params(), { env });
      expect(again.result).toMatchObject({ pages: 7, upserted: 0 });
    });

    it("honours 429 Retry-After and still completes", async () => {
      rateLimitNext = 2;
      const started = Date.now();
      const run = await runTask("sync.notion", params(), { env });
      expect(run.code).toBe(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
      expect(requests.filter((r) => r.startsWith("GET /v1/databases/db-1"))).toHaveLength(3);
    });

    it("75 when Notion keeps failing or is down, 78 for an unshared database or missing token, 64 for bad params", async () => {
      failing = true;
      const down = await runTask("sync.notion", params(), { env });
      expect(down.code).toBe(75);
      failing = false;
      const [closed] = await freePorts(1);
      expect(
        (
          await runTask(
            "sync.notion",
            { ...params(), baseUrl: `http://127.0.0.1:${closed}` },
            { env },
          )
        ).code,
      ).toBe(75);
      const missing = await runTask(
        "sync.notion",
        { ...params(), databases: ["missing"] },
        { env },
      );
      expect(missing.code).toBe(78);
      expect(missing.stderr).toContain("share the database");
      expect(
        (
          await runTask("sync.notion", params(), {
            env: { DATABASE_URL: env.DATABASE_URL as string },
          })
        ).code,
      ).toBe(78);
      const bad = await runTask("sync.notion", { databases: [] }, { env });
      expect(bad.code).toBe(64);
      expect(bad.stderr).toContain("params.databases");
    }, 60_000);

    it("stops on SIGTERM between page batches", async () => {
      const run = await runTask(
        "sync.notion",
        { ...params(), pageSize: 1 },
        { env, sigtermWhen: "synced page batch" },
      );
      expect(run.code).toBe(75);
      expect(run.result.pages).toBeLessThan(7);
    });
  });
});
