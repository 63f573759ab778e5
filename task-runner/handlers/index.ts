// Task type → handler. Every catalogue type has exactly one.
import type { TaskType } from "../../crds/catalogue/index.ts";
import type { Handler } from "../context.ts";
import { emailDailySummary } from "./email-daily-summary.ts";
import { emailProcessQueue } from "./email-process-queue.ts";
import { filesBackup } from "./files-backup.ts";
import { filesCleanupTemp } from "./files-cleanup-temp.ts";
import { httpRequest } from "./http-request.ts";
import { maintenanceCleanupSessions } from "./maintenance-cleanup-sessions.ts";
import { maintenanceOptimizeDatabase } from "./maintenance-optimize-database.ts";
import { remindersDispatch } from "./reminders-dispatch.ts";
import { syncCalendar } from "./sync-calendar.ts";
import { syncNotion } from "./sync-notion.ts";

// biome-ignore lint/suspicious/noExplicitAny: each handler takes its own params type, checked by the catalogue schema first
export const handlers: Record<TaskType, Handler<any>> = {
  "email.process-queue": emailProcessQueue,
  "email.daily-summary": emailDailySummary,
  "files.cleanup-temp": filesCleanupTemp,
  "files.backup": filesBackup,
  "sync.calendar": syncCalendar,
  "sync.notion": syncNotion,
  "maintenance.optimize-database": maintenanceOptimizeDatabase,
  "maintenance.cleanup-sessions": maintenanceCleanupSessions,
  "reminders.dispatch": remindersDispatch,
  "http.request": httpRequest,
};
