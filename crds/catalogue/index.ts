// The built-in task catalogue: every task type the shared runner knows, with
// its params schema and the schedule it had in the Celery-beat system it
// replaces. The operator validates spec.params with these schemas and the
// runner validates its input with the same ones.
import type { z } from "zod";
import { emailDailySummaryParams, emailProcessQueueParams } from "./email.ts";
import { filesBackupParams, filesCleanupTempParams } from "./files.ts";
import { httpRequestParams } from "./http.ts";
import {
  maintenanceCleanupSessionsParams,
  maintenanceOptimizeDatabaseParams,
} from "./maintenance.ts";
import { remindersDispatchParams } from "./reminders.ts";
import { syncCalendarParams, syncNotionParams } from "./sync.ts";

export interface CatalogueEntry {
  description: string;
  params: z.ZodType;
  /** Schedule used when spec.schedule is omitted; none for tasks that have no natural one. */
  defaultSchedule?: string;
  /** Environment variables the handler needs, filled from Secrets via spec.env/envFrom. */
  env: string[];
}

const entries = {
  "email.process-queue": {
    description: "Send queued emails from a database table over SMTP, marking them sent or failed.",
    params: emailProcessQueueParams,
    defaultSchedule: "*/5 * * * *",
    env: ["DATABASE_URL", "SMTP_URL"],
  },
  "email.daily-summary": {
    description: "Build a per-recipient digest from a query and send it once a day.",
    params: emailDailySummaryParams,
    defaultSchedule: "0 8 * * *",
    env: ["DATABASE_URL", "SMTP_URL"],
  },
  "files.cleanup-temp": {
    description: "Delete files older than an age under given directories.",
    params: filesCleanupTempParams,
    defaultSchedule: "0 2 * * *",
    env: [],
  },
  "files.backup": {
    description: "Archive directories and database tables with checksums and retention.",
    params: filesBackupParams,
    defaultSchedule: "0 1 * * 0",
    env: [],
  },
  "sync.calendar": {
    description: "Fetch iCalendar feeds, upsert their events and remove deleted ones.",
    params: syncCalendarParams,
    defaultSchedule: "0 * * * *",
    env: ["DATABASE_URL"],
  },
  "sync.notion": {
    description: "Pull the pages of Notion databases into the database.",
    params: syncNotionParams,
    defaultSchedule: "0 */2 * * *",
    env: ["DATABASE_URL", "NOTION_TOKEN"],
  },
  "maintenance.optimize-database": {
    description: "VACUUM and ANALYZE (optionally REINDEX) tables and report before and after.",
    params: maintenanceOptimizeDatabaseParams,
    defaultSchedule: "0 3 * * 0",
    env: ["DATABASE_URL"],
  },
  "maintenance.cleanup-sessions": {
    description: "Delete expired sessions in small batches.",
    params: maintenanceCleanupSessionsParams,
    defaultSchedule: "0 4 * * *",
    env: ["DATABASE_URL"],
  },
  "reminders.dispatch": {
    description: "Deliver due reminders by email or webhook and reschedule recurring ones.",
    params: remindersDispatchParams,
    defaultSchedule: "* * * * *",
    env: ["DATABASE_URL"],
  },
  "http.request": {
    description: "Call a webhook or URL and check the response status.",
    params: httpRequestParams,
    env: [],
  },
} as const satisfies Record<string, CatalogueEntry>;

export type TaskType = keyof typeof entries;
export const catalogue: Record<TaskType, CatalogueEntry> = entries;
export const taskTypes = Object.keys(catalogue) as TaskType[];

export function isTaskType(value: string): value is TaskType {
  return Object.hasOwn(catalogue, value);
}

/** One line per problem, each naming the offending params field. */
export function validateParams(
  type: TaskType,
  params: unknown,
  fieldPrefix = "params",
): { ok: true; value: unknown } | { ok: false; problems: string[] } {
  const result = catalogue[type].params.safeParse(params ?? {});
  if (result.success) return { ok: true, value: result.data };
  return {
    ok: false,
    problems: result.error.issues.map((issue) => {
      return `${fieldPath(fieldPrefix, issue.path)}: ${issue.message}`;
    }),
  };
}

/** "spec.params" + ["paths", 0] → "spec.params.paths[0]", the way kubectl names fields. */
export function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>(
    (acc, part) => (typeof part === "number" ? `${acc}[${part}]` : `${acc}.${String(part)}`),
    prefix,
  );
}
