// Parameters of the email tasks. SMTP and database connections come from the
// environment (SMTP_URL, DATABASE_URL), filled from Secrets, never from params.
import { z } from "zod";
import { duration } from "../duration.ts";
import { emailAddress, sqlIdentifier } from "./fields.ts";

export const emailProcessQueueParams = z
  .object({
    table: sqlIdentifier("Queue table holding the emails to send.").default("email_queue"),
    batchSize: z.int().min(1).max(1000).default(50).describe("Emails claimed and sent per run."),
    maxAttempts: z
      .int()
      .min(1)
      .max(50)
      .default(5)
      .describe("Attempts before an email is marked failed for good."),
    retryBackoff: duration(
      "Delay before the first retry of a failed email; doubles with each attempt.",
    ).default("5m"),
    sendTimeout: duration("Time allowed for one SMTP delivery.").default("30s"),
    from: emailAddress("Sender used when a queued email has none.").optional(),
  })
  .strict();

export const emailDailySummaryParams = z
  .object({
    query: z
      .string()
      .min(1)
      .describe(
        "SQL returning one row per digest item with columns recipient, title and optionally body and url.",
      ),
    subject: z
      .string()
      .min(1)
      .max(200)
      .default("Your daily summary")
      .describe("Subject line of every digest."),
    from: emailAddress("Sender of the digests."),
    sentTable: sqlIdentifier(
      "Table recording digests sent, so a rerun on the same day sends none twice.",
    ).default("email_digest_log"),
    maxItemsPerRecipient: z
      .int()
      .min(1)
      .max(500)
      .default(50)
      .describe("Items listed per digest; the rest are counted."),
  })
  .strict();
