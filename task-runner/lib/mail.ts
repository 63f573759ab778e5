// SMTP delivery through nodemailer, configured by SMTP_URL
// (smtp://user:pass@host:port or smtps://...).
import nodemailer from "nodemailer";
import { requireEnv, type TaskContext } from "../context.ts";

export function mailTransport(ctx: TaskContext, timeoutMs: number) {
  const url = requireEnv(ctx, "SMTP_URL", "SMTP server URL, e.g. smtp://user:pass@mail:587");
  const options = new URL(url);
  return nodemailer.createTransport({
    host: options.hostname,
    port: Number(options.port || (options.protocol === "smtps:" ? 465 : 25)),
    secure: options.protocol === "smtps:",
    ...(options.username
      ? {
          auth: {
            user: decodeURIComponent(options.username),
            pass: decodeURIComponent(options.password),
          },
        }
      : {}),
    // Plain SMTP peers inside the cluster often have no certificate; STARTTLS is used when offered.
    tls: { rejectUnauthorized: options.searchParams.get("tlsVerify") !== "false" },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
}
