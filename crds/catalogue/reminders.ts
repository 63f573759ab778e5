// Parameters of reminders.dispatch (database from DATABASE_URL, mail from SMTP_URL).
import { z } from "zod";
import { duration } from "../duration.ts";
import { emailAddress, sqlIdentifier } from "./fields.ts";

export const remindersDispatchParams = z
  .object({
    table: sqlIdentifier("Reminders table.").default("reminders"),
    batchSize: z.int().min(1).max(10_000).default(100).describe("Due reminders delivered per run."),
    from: emailAddress("Sender of email reminders.").optional(),
    webhookTimeout: duration("Time allowed for one webhook delivery.").default("10s"),
  })
  .strict();
