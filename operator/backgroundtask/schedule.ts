// Schedules: Jenkins-style H expanded deterministically from namespace/name,
// validation matching what the CronJob controller accepts, and the next run.
import { hash } from "node:crypto";
import { CronSyntaxError, nextActivation, parseStandard } from "./cron.ts";

const DESCRIPTORS: Record<string, string> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

// H ranges per field; day of month stops at 28 so every month has the day (as Jenkins does).
const H_RANGES: Array<[number, number]> = [
  [0, 59],
  [0, 23],
  [1, 28],
  [1, 12],
  [0, 6],
];
const FIELD_NAMES = ["minute", "hour", "day of month", "month", "day of week"];

export class ScheduleError extends Error {}

/** One 32-bit number per field, from the SHA-256 of the seed: field i reads bytes 4i to 4i+3. */
function fieldHashes(seed: string): number[] {
  const digest = hash("sha256", seed, "buffer");
  return H_RANGES.map((_, field) => digest.readUInt32BE(field * 4));
}

function expandHashedPart(part: string, field: number, hash: number): string {
  const match = /^H(?:\((\d+)-(\d+)\))?(?:\/(\d+))?$/.exec(part);
  if (!match) {
    if (part.includes("H"))
      throw new ScheduleError(
        `${FIELD_NAMES[field]} field: cannot read ${JSON.stringify(part)}; use H, H(a-b), H/n or H(a-b)/n`,
      );
    return part;
  }
  const [defaultLo, defaultHi] = H_RANGES[field] as [number, number];
  const lo = match[1] !== undefined ? Number(match[1]) : defaultLo;
  const hi = match[2] !== undefined ? Number(match[2]) : defaultHi;
  if (lo > hi || lo < defaultLo || hi > (field === 2 ? 31 : defaultHi)) {
    throw new ScheduleError(
      `${FIELD_NAMES[field]} field: range ${lo}-${hi} is outside ${defaultLo}-${defaultHi}`,
    );
  }
  if (match[3] !== undefined) {
    const step = Number(match[3]);
    if (step < 1 || step > hi - lo + 1)
      throw new ScheduleError(
        `${FIELD_NAMES[field]} field: step ${step} does not fit range ${lo}-${hi}`,
      );
    return `${lo + (hash % step)}-${hi}/${step}`;
  }
  return String(lo + (hash % (hi - lo + 1)));
}

/**
 * The schedule the CronJob will use: descriptors and H expanded. The same
 * namespace/name always gives the same schedule; different tasks spread out.
 */
export function resolveSchedule(schedule: string, namespace: string, name: string): string {
  const trimmed = schedule.trim();
  if (trimmed.startsWith("@")) {
    const expanded = DESCRIPTORS[trimmed.toLowerCase()];
    if (!expanded)
      throw new ScheduleError(
        `unknown descriptor ${trimmed}; use one of ${Object.keys(DESCRIPTORS).join(", ")}`,
      );
    return trimmed;
  }
  if (/^(CRON_)?TZ=/.test(trimmed))
    throw new ScheduleError("time zones go in spec.timeZone, not in the schedule");
  const fields = trimmed.split(/\s+/);
  if (fields.length !== 5) {
    throw new ScheduleError(
      `expected 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`,
    );
  }
  const hashes = fieldHashes(`${namespace}/${name}`);
  return fields
    .map((field, i) =>
      field
        .split(",")
        .map((part) => expandHashedPart(part, i, hashes[i] as number))
        .join(","),
    )
    .join(" ");
}

/**
 * Throws a ScheduleError naming the problem when the CronJob controller would
 * not accept the schedule: the same parser (robfig/cron's ParseStandard, ported).
 */
export function validateResolvedSchedule(resolved: string): void {
  try {
    parseStandard(resolved);
  } catch (error) {
    if (error instanceof CronSyntaxError) throw new ScheduleError(error.message);
    throw error;
  }
}

export function validateTimeZone(timeZone: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
  } catch {
    throw new ScheduleError(
      `unknown time zone ${JSON.stringify(timeZone)}; use an IANA name such as Europe/Berlin or UTC`,
    );
  }
}

// Every reconcile asks twice for its task's next run, and thousands of tasks share a few hundred
// schedules: each schedule keeps its last answer (not its parse: ~1.8 KB of field arrays each). An
// answer N for the instant A holds for every instant in [A, N), since no activation lies between
// A and N. `@every` counts from the instant itself, so its answers are not kept.
const KEPT_ANSWERS = 4096;
const keptAnswers = new Map<string, { from: number; next: number | undefined }>();

/** First scheduled time strictly after `after`, as the CronJob controller computes it; undefined if none within 5 years. */
export function nextScheduleTime(
  resolved: string,
  timeZone: string | undefined,
  after: Date,
): Date | undefined {
  const zone = timeZone ?? "UTC";
  const key = `${zone} ${resolved}`;
  const at = after.getTime();
  const kept = keptAnswers.get(key);
  if (kept?.next !== undefined && kept.from <= at && at < kept.next) return new Date(kept.next);
  const schedule = parseStandard(resolved);
  const next = nextActivation(schedule, zone, after)?.getTime();
  if (schedule.kind === "spec") {
    if (!kept && keptAnswers.size >= KEPT_ANSWERS) keptAnswers.clear();
    keptAnswers.set(key, { from: at, next });
  }
  return next === undefined ? undefined : new Date(next);
}
