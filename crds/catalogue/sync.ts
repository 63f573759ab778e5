// Parameters of the sync tasks that pull external data into the database.
import { z } from "zod";
import { duration } from "../duration.ts";
import { httpUrl, sqlIdentifier } from "./fields.ts";

export const syncCalendarParams = z
  .object({
    feeds: z
      .array(
        z
          .object({
            name: z
              .string()
              .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "must be lowercase letters, digits and dashes")
              .describe("Feed name stored with its events."),
            url: httpUrl("iCalendar (.ics) feed URL."),
          })
          .strict(),
      )
      .min(1)
      .max(100)
      .describe("iCalendar feeds to fetch."),
    table: sqlIdentifier("Table events are upserted into.").default("calendar_events"),
    windowDays: z
      .int()
      .min(1)
      .max(3650)
      .default(90)
      .describe("Days ahead over which recurring events are expanded."),
    timeout: duration("Time allowed to fetch one feed.").default("30s"),
  })
  .strict();

export const syncNotionParams = z
  .object({
    databases: z
      .array(z.string().min(1).max(100))
      .min(1)
      .max(100)
      .describe("IDs of the Notion databases to pull (token from NOTION_TOKEN)."),
    table: sqlIdentifier("Table pages are upserted into.").default("notion_pages"),
    baseUrl: httpUrl("Notion API base URL, for proxies and tests.").optional(),
    pageSize: z.int().min(1).max(100).default(100).describe("Pages requested per API call."),
    maxPages: z
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe("Upper bound on pages pulled per run."),
  })
  .strict();
