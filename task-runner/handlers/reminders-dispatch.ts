// reminders.dispatch: claim due reminders (FOR UPDATE SKIP LOCKED), deliver
// each by email or webhook, then reschedule recurring ones (RRULE) or mark
// one-offs done. A reminder is claimed before delivery and never re-claimed
// from that state, so it is never delivered twice: one whose runner died
// mid-delivery stays 'delivering' and is reported as stuck.
import ICAL from "ical.js";
import type { z } from "zod";
import type { remindersDispatchParams } from "../../crds/catalogue/reminders.ts";
import { parseDuration } from "../../crds/duration.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify, retryable, type TaskError } from "../errors.ts";
import { connect, ident } from "../lib/db.ts";
import { mailTransport } from "../lib/mail.ts";

type Params = z.output<typeof remindersDispatchParams>;

interface Reminder {
  id: string;
  channel: "email" | "webhook";
  recipient: string;
  subject: string;
  message: string;
  due_at: Date;
  rrule: string | null;
}

/** The first occurrence of an RRULE series (starting at dtstart) strictly after `after`. */
export function nextOccurrence(rrule: string, dtstart: Date, after: Date): Date | undefined {
  const recur = ICAL.Recur.fromString(rrule.replace(/^RRULE:/i, ""));
  const iterator = recur.iterator(ICAL.Time.fromJSDate(dtstart, true));
  for (let i = 0, next = iterator.next(); next && i < 100_000; i++, next = iterator.next()) {
    const at = next.toJSDate();
    if (at > after) return at;
  }
  return undefined;
}

export async function remindersDispatch(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const db = await connect(ctx);
  const table = ident(params.table);
  const result = {
    due: 0,
    delivered: 0,
    rescheduled: 0,
    completed: 0,
    failed: 0,
    released: 0,
    stuck: 0,
  };
  let transport: ReturnType<typeof mailTransport> | undefined;
  try {
    result.stuck = Number(
      (
        await db.query(
          `SELECT count(*) AS n FROM ${table} WHERE status = 'delivering' AND updated_at < now() - interval '15 minutes'`,
        )
      ).rows[0]?.n ?? 0,
    );
    const claimed = (
      await db.query<Reminder>(
        `UPDATE ${table} SET status = 'delivering', updated_at = now()
         WHERE id IN (SELECT id FROM ${table} WHERE status = 'pending' AND due_at <= now() ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, channel, recipient, subject, message, due_at, rrule`,
        [params.batchSize],
      )
    ).rows;
    result.due = claimed.length;
    const release = async (rest: Reminder[]) => {
      if (!rest.length) return;
      await db.query(
        `UPDATE ${table} SET status = 'pending', updated_at = now() WHERE id = ANY($1::bigint[]) AND status = 'delivering'`,
        [rest.map((r) => r.id)],
      );
      result.released += rest.length;
    };
    for (let i = 0; i < claimed.length; i++) {
      const reminder = claimed[i] as Reminder;
      if (stopping(ctx)) {
        await release(claimed.slice(i));
        break;
      }
      let failure: TaskError | undefined;
      try {
        if (reminder.channel === "webhook") {
          const response = await fetch(reminder.recipient, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              id: reminder.id,
              subject: reminder.subject,
              message: reminder.message,
              dueAt: reminder.due_at,
            }),
            signal: AbortSignal.any([
              ctx.signal,
              AbortSignal.timeout(parseDuration(params.webhookTimeout)),
            ]),
          });
          if (response.status >= 500 || response.status === 429)
            failure = retryable(`webhook ${reminder.recipient} answered ${response.status}`);
          else if (!response.ok) throw new Error(`webhook answered ${response.status}`);
        } else {
          transport ??= mailTransport(ctx, 30_000);
          await transport.sendMail({
            from: params.from,
            to: reminder.recipient,
            subject: reminder.subject,
            text: reminder.message,
          });
        }
      } catch (error) {
        const classified = classify(error, `delivering reminder ${reminder.id}`);
        if (classified.exitCode === 75) failure = classified;
        else {
          await db.query(
            `UPDATE ${table} SET status = 'failed', last_error = $2, updated_at = now() WHERE id = $1`,
            [reminder.id, (error as Error).message.slice(0, 1000)],
          );
          result.failed++;
          continue;
        }
      }
      if (failure) {
        // The channel is down: put this and the rest back, untouched, for the next run.
        await release(claimed.slice(i));
        throw retryable(`${failure.message}; ${claimed.length - i} reminders left pending`);
      }
      result.delivered++;
      ctx.log.debug({ id: reminder.id }, "delivered reminder");
      const next = reminder.rrule
        ? nextOccurrence(reminder.rrule, reminder.due_at, new Date())
        : undefined;
      if (next) {
        await db.query(
          `UPDATE ${table} SET status = 'pending', due_at = $2, delivered_count = delivered_count + 1, updated_at = now() WHERE id = $1`,
          [reminder.id, next],
        );
        result.rescheduled++;
      } else {
        await db.query(
          `UPDATE ${table} SET status = 'done', delivered_count = delivered_count + 1, updated_at = now() WHERE id = $1`,
          [reminder.id],
        );
        result.completed++;
      }
    }
  } catch (error) {
    throw classify(error, `dispatching reminders from ${params.table}`);
  } finally {
    transport?.close();
    await db.end().catch(() => {});
  }
  return result;
}
