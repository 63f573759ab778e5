// email.process-queue: claim pending emails (FOR UPDATE SKIP LOCKED, so runs
// in parallel never take the same row), send each over SMTP, and mark it
// sent, or pending again with a growing delay, or failed after maxAttempts.
// If SMTP is unreachable the claimed emails are released untouched (exit 75).
import type { z } from "zod";
import type { emailProcessQueueParams } from "../../crds/catalogue/email.ts";
import { parseDuration } from "../../crds/duration.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify, retryable } from "../errors.ts";
import { connect, ident } from "../lib/db.ts";
import { mailTransport } from "../lib/mail.ts";

type Params = z.output<typeof emailProcessQueueParams>;

interface QueuedEmail {
  id: string;
  recipient: string;
  sender: string | null;
  subject: string;
  body_text: string;
  body_html: string | null;
  attempts: number;
}

/** A claim older than this belongs to a runner that died; its emails go back to the queue. */
const STALE_CLAIM = "15 minutes";

export async function emailProcessQueue(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const db = await connect(ctx);
  const table = ident(params.table);
  const transport = mailTransport(ctx, parseDuration(params.sendTimeout));
  const result = { claimed: 0, sent: 0, retrying: 0, failed: 0, released: 0 };
  let claimed: QueuedEmail[] = [];
  const release = async (emails: QueuedEmail[]) => {
    if (!emails.length) return;
    await db.query(
      `UPDATE ${table} SET status = 'pending', claimed_at = NULL WHERE id = ANY($1::bigint[]) AND status = 'sending'`,
      [emails.map((e) => e.id)],
    );
    result.released += emails.length;
  };
  try {
    const claim = await db.query<QueuedEmail>(
      `UPDATE ${table} SET status = 'sending', claimed_at = now()
       WHERE id IN (
         SELECT id FROM ${table}
         WHERE (status = 'pending' AND next_attempt_at <= now())
            OR (status = 'sending' AND claimed_at < now() - interval '${STALE_CLAIM}')
         ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
       RETURNING id, recipient, sender, subject, body_text, body_html, attempts`,
      [params.batchSize],
    );
    claimed = claim.rows;
    result.claimed = claimed.length;
    for (let i = 0; i < claimed.length; i++) {
      const email = claimed[i] as QueuedEmail;
      if (stopping(ctx)) {
        await release(claimed.slice(i));
        break;
      }
      try {
        await transport.sendMail({
          from: email.sender ?? params.from,
          to: email.recipient,
          subject: email.subject,
          text: email.body_text,
          ...(email.body_html ? { html: email.body_html } : {}),
        });
      } catch (error) {
        const failure = classify(error, "sending email");
        const responseCode = (error as { responseCode?: number }).responseCode;
        if (failure.exitCode === 75 && responseCode === undefined) {
          // The SMTP server itself is unreachable: not this email's fault.
          await release(claimed.slice(i));
          throw retryable(
            `SMTP server unreachable (${(error as Error).message}); ${claimed.length - i} emails left queued`,
          );
        }
        const attempts = email.attempts + 1;
        const giveUp = attempts >= params.maxAttempts;
        await db.query(
          `UPDATE ${table} SET attempts = $2, last_error = $3, claimed_at = NULL,
             status = CASE WHEN $4 THEN 'failed' ELSE 'pending' END,
             next_attempt_at = now() + ($5::bigint * interval '1 millisecond')
           WHERE id = $1`,
          [
            email.id,
            attempts,
            (error as Error).message.slice(0, 1000),
            giveUp,
            parseDuration(params.retryBackoff) * 2 ** (attempts - 1),
          ],
        );
        if (giveUp) result.failed++;
        else result.retrying++;
        continue;
      }
      await db.query(
        `UPDATE ${table} SET status = 'sent', sent_at = now(), attempts = attempts + 1, claimed_at = NULL, last_error = NULL WHERE id = $1`,
        [email.id],
      );
      result.sent++;
      ctx.log.debug({ id: email.id }, "sent email");
    }
  } catch (error) {
    throw classify(error, `processing the email queue ${params.table}`);
  } finally {
    transport.close();
    await db.end().catch(() => {});
  }
  return result;
}
