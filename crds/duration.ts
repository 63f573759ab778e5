// Durations as users write them in Kubernetes objects: Go's time.ParseDuration
// syntax limited to non-negative values ("90s", "5m", "1h30m", "250ms").
import { z } from "zod";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
export const DURATION_PATTERN = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;

/** Milliseconds in a duration string; throws on anything DURATION_PATTERN rejects. */
export function parseDuration(text: string): number {
  if (!new RegExp(DURATION_PATTERN).test(text))
    throw new Error(`invalid duration ${JSON.stringify(text)}`);
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART))
    total += Number(amount) * (UNIT_MS[unit ?? "s"] ?? 0);
  return total;
}

/** A duration field, validated by the apiserver (pattern) and by zod alike. */
export function duration(description: string) {
  return z
    .string()
    .regex(new RegExp(DURATION_PATTERN), "must be a duration such as 30s, 5m or 1h30m")
    .describe(description);
}
