// Field shapes shared by several catalogue tasks.
import { z } from "zod";

/** A SQL identifier, optionally schema-qualified; never interpolated unchecked. */
export const sqlIdentifier = (description: string) =>
  z
    .string()
    .regex(
      /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/,
      "must be a SQL identifier such as sessions or app.sessions",
    )
    .describe(description);

export const absolutePath = (description: string) =>
  z.string().regex(/^\/.*/, "must be an absolute path").describe(description);

export const httpUrl = (description: string) =>
  z
    .string()
    .regex(/^https?:\/\/[^\s]+$/, "must be an http:// or https:// URL")
    .describe(description);

export const emailAddress = (description: string) =>
  z
    .string()
    .regex(/^[^\s@<>]+@[^\s@<>]+$|^[^<>]*<[^\s@<>]+@[^\s@<>]+>$/, "must be an email address")
    .describe(description);
