// email.daily-summary: run the configured query, group its rows by recipient,
// send each recipient one plain-text + HTML digest. A row in sentTable per
// (recipient, day), inserted in the same transaction as the send, makes a
// rerun on the same day send nothing twice.
import type { z } from "zod";
import type { emailDailySummaryParams } from "../../crds/catalogue/email.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify, dataError, retryable } from "../errors.ts";
import { connect, ident, transaction } from "../lib/db.ts";
import { mailTransport } from "../lib/mail.ts";

type Params = z.output<typeof emailDailySummaryParams>;

interface Item {
  title: string;
  body?: string;
  url?: string;
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderDigest(
  subject: string,
  items: Item[],
  more: number,
): { text: string; html: string } {
  const text = [
    subject,
    "",
    ...items.map(
      (i) => `- ${i.title}${i.body ? `\n  ${i.body}` : ""}${i.url ? `\n  ${i.url}` : ""}`,
    ),
    ...(more ? ["", `… and ${more} more`] : []),
  ].join("\n");
  const html = `<h1>${escapeHtml(subject)}</h1><ul>${items
    .map(
      (i) =>
        `<li>${i.url ? `<a href="${escapeHtml(i.url)}">${escapeHtml(i.title)}</a>` : escapeHtml(i.title)}${i.body ? `<p>${escapeHtml(i.body)}</p>` : ""}</li>`,
    )
    .join("")}</ul>${more ? `<p>… and ${more} more</p>` : ""}`;
  return { text, html };
}

export async function emailDailySummary(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const db = await connect(ctx);
  const transport = mailTransport(ctx, 30_000);
  const sent = ident(params.sentTable);
  const result = { recipients: 0, sent: 0, alreadySent: 0, items: 0 };
  try {
    let rows: Array<Record<string, unknown>>;
    try {
      rows = (await db.query(params.query)).rows;
    } catch (error) {
      throw classify(error, "running the digest query");
    }
    const byRecipient = new Map<string, Item[]>();
    for (const row of rows) {
      if (typeof row.recipient !== "string" || typeof row.title !== "string") {
        throw dataError(
          "the digest query must return text columns recipient and title (and optionally body, url)",
        );
      }
      const list = byRecipient.get(row.recipient) ?? [];
      list.push({
        title: row.title,
        body: typeof row.body === "string" ? row.body : undefined,
        url: typeof row.url === "string" ? row.url : undefined,
      });
      byRecipient.set(row.recipient, list);
    }
    result.recipients = byRecipient.size;
    for (const [recipient, items] of byRecipient) {
      if (stopping(ctx)) break;
      await transaction(db, async () => {
        // Waits for a parallel run's claim on the same recipient, then sees it.
        const claim = await db.query(
          `INSERT INTO ${sent} (recipient, digest_date, items, sent_at) VALUES ($1, current_date, $2, now())
           ON CONFLICT (recipient, digest_date) DO NOTHING`,
          [recipient, items.length],
        );
        if (claim.rowCount === 0) {
          result.alreadySent++;
          return;
        }
        const shown = items.slice(0, params.maxItemsPerRecipient);
        const { text, html } = renderDigest(params.subject, shown, items.length - shown.length);
        try {
          await transport.sendMail({
            from: params.from,
            to: recipient,
            subject: params.subject,
            text,
            html,
          });
        } catch (error) {
          throw retryable(
            `sending the digest to ${recipient} failed (${(error as Error).message}); it will be sent on the next run`,
          );
        }
        result.sent++;
        result.items += shown.length;
        ctx.log.debug({ recipient }, "sent digest");
      });
    }
  } catch (error) {
    throw classify(error, "sending daily summaries");
  } finally {
    transport.close();
    await db.end().catch(() => {});
  }
  return result;
}
