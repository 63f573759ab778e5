// The short JSON result a run leaves at the termination message path, which
// Kubernetes caps at 4096 bytes and the operator copies into status.lastRun.
import { writeFileSync } from "node:fs";

export const MAX_RESULT_BYTES = 4096;

export function boundedJson(result: Record<string, unknown>, maxBytes = MAX_RESULT_BYTES): string {
  let text = JSON.stringify(result);
  if (Buffer.byteLength(text) <= maxBytes) return text;
  // Keep the scalar summary (counts, outcome, error); drop lists and long strings first.
  const slim: Record<string, unknown> = { truncated: true };
  for (const [key, value] of Object.entries(result)) {
    if (typeof value === "number" || typeof value === "boolean") slim[key] = value;
    else if (typeof value === "string") slim[key] = value.slice(0, 500);
  }
  text = JSON.stringify(slim);
  return Buffer.byteLength(text) <= maxBytes
    ? text
    : JSON.stringify({ truncated: true, outcome: result.outcome });
}

export function writeResult(path: string, result: Record<string, unknown>): void {
  try {
    writeFileSync(path, boundedJson(result));
  } catch {
    // Outside Kubernetes the path may not exist; the result is also logged.
  }
}
