// A real SMTP server peer on loopback (smtp-server, from the nodemailer
// project) that records every message it accepts.
import { SMTPServer } from "smtp-server";
import { freePorts } from "../controlplane/processes.ts";

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: string;
}

export interface SmtpPeer {
  url: string;
  port: number;
  messages: ReceivedMail[];
  /** Reject mail to these recipients with a permanent 550 error. */
  rejectRecipients: Set<string>;
  /** Accept each message only after this long: a slow mail server. */
  delayMs: number;
  close(): Promise<void>;
}

/** `host`: where to listen; a real node's bridge address for pods to reach it. */
export async function startSmtpPeer(host = "127.0.0.1"): Promise<SmtpPeer> {
  const [port] = await freePorts(1);
  const messages: ReceivedMail[] = [];
  const rejectRecipients = new Set<string>();
  const peer = { delayMs: 0 };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (rejectRecipients.has(address.address)) {
        const error = Object.assign(new Error("mailbox unavailable"), { responseCode: 550 });
        callback(error);
        return;
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString("utf8"),
        });
        setTimeout(callback, peer.delayMs);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, host, () => resolve()));
  return Object.assign(peer, {
    url: `smtp://${host}:${port}`,
    port: port ?? 0,
    messages,
    rejectRecipients,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
