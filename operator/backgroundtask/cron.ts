// Cron schedules read exactly as the Kubernetes CronJob controller reads them.
// The controller uses github.com/robfig/cron/v3 (ParseStandard, SpecSchedule.Next)
// with Go's time package; this is a line-by-line port of both, because the
// time a task shows as `nextScheduleTime` must be the time its run starts —
// including in daylight-saving gaps (where robfig skips the day) and for every
// field the parser reads differently from other cron libraries (7 is not
// Sunday, descriptors are lower case only, DOM/DOW OR-ing only when neither is *).

export class CronSyntaxError extends Error {}

interface Field {
  bits: boolean[];
  /** Set by `*` or `?` (without a step > 1): makes day-of-month/day-of-week combine with AND. */
  star: boolean;
}

interface Bounds {
  min: number;
  max: number;
  names?: Record<string, number>;
}

const MINUTES: Bounds = { min: 0, max: 59 };
const HOURS: Bounds = { min: 0, max: 23 };
const DOM: Bounds = { min: 1, max: 31 };
const MONTHS: Bounds = {
  min: 1,
  max: 12,
  names: {
    jan: 1,
    feb: 2,
    mar: 3,
    apr: 4,
    may: 5,
    jun: 6,
    jul: 7,
    aug: 8,
    sep: 9,
    oct: 10,
    nov: 11,
    dec: 12,
  },
};
const DOW: Bounds = {
  min: 0,
  max: 6,
  names: { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 },
};

export type CronSchedule =
  | {
      kind: "spec";
      minute: Field;
      hour: Field;
      dom: Field;
      month: Field;
      dow: Field;
    }
  | { kind: "every"; delayMs: number };

function bitsOf(min: number, max: number, step: number): boolean[] {
  const bits: boolean[] = [];
  for (let i = min; i <= max; i += step) bits[i] = true;
  return bits;
}

function all(b: Bounds): Field {
  return { bits: bitsOf(b.min, b.max, 1), star: true };
}

function only(value: number): Field {
  return { bits: bitsOf(value, value, 1), star: false };
}

function parseInt10(text: string): number {
  if (!/^[+-]?\d+$/.test(text)) throw new CronSyntaxError(`failed to parse int from ${text}`);
  const value = Number(text);
  if (value < 0) throw new CronSyntaxError(`negative number (${value}) not allowed: ${text}`);
  return value;
}

function parseIntOrName(text: string, names: Record<string, number> | undefined): number {
  const named = names?.[text.toLowerCase()];
  return named ?? parseInt10(text);
}

function getRange(expr: string, b: Bounds, into: Field): void {
  const rangeAndStep = expr.split("/");
  const lowAndHigh = (rangeAndStep[0] ?? "").split("-");
  const singleDigit = lowAndHigh.length === 1;
  let start: number;
  let end: number;
  let star = false;
  if (lowAndHigh[0] === "*" || lowAndHigh[0] === "?") {
    start = b.min;
    end = b.max;
    star = true;
  } else {
    start = parseIntOrName(lowAndHigh[0] ?? "", b.names);
    if (lowAndHigh.length === 1) end = start;
    else if (lowAndHigh.length === 2) end = parseIntOrName(lowAndHigh[1] ?? "", b.names);
    else throw new CronSyntaxError(`too many hyphens: ${expr}`);
  }
  let step: number;
  if (rangeAndStep.length === 1) step = 1;
  else if (rangeAndStep.length === 2) {
    step = parseInt10(rangeAndStep[1] ?? "");
    // "N/step" means "N-max/step".
    if (singleDigit) end = b.max;
    if (step > 1) star = false;
  } else throw new CronSyntaxError(`too many slashes: ${expr}`);
  if (start < b.min)
    throw new CronSyntaxError(`beginning of range (${start}) below minimum (${b.min}): ${expr}`);
  if (end > b.max)
    throw new CronSyntaxError(`end of range (${end}) above maximum (${b.max}): ${expr}`);
  if (start > end)
    throw new CronSyntaxError(
      `beginning of range (${start}) beyond end of range (${end}): ${expr}`,
    );
  if (step === 0) throw new CronSyntaxError(`step of range should be a positive number: ${expr}`);
  for (let i = start; i <= end; i += step) into.bits[i] = true;
  into.star ||= star;
}

function getField(text: string, b: Bounds): Field {
  const field: Field = { bits: [], star: false };
  for (const expr of text.split(",").filter((e) => e !== "")) getRange(expr, b, field);
  return field;
}

/** Go's time.ParseDuration for the units a schedule would use (h, m, s, ms). */
function parseGoDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/y;
  let total = 0;
  let index = 0;
  const units: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    us: 1e-3,
    µs: 1e-3,
    ns: 1e-6,
  };
  if (!text) throw new CronSyntaxError(`failed to parse duration @every ${text}`);
  while (index < text.length) {
    re.lastIndex = index;
    const match = re.exec(text);
    if (!match) throw new CronSyntaxError(`failed to parse duration @every ${text}`);
    total += Number(match[1]) * (units[match[2] ?? "s"] ?? 0);
    index = re.lastIndex;
  }
  return total;
}

/** robfig/cron's ParseStandard: five fields or a descriptor. Throws CronSyntaxError with its message. */
export function parseStandard(spec: string): CronSchedule {
  if (spec.length === 0) throw new CronSyntaxError("empty spec string");
  if (spec.startsWith("TZ=") || spec.startsWith("CRON_TZ="))
    throw new CronSyntaxError("time zones go in spec.timeZone, not in the schedule");
  if (spec.startsWith("@")) {
    switch (spec) {
      case "@yearly":
      case "@annually":
        return {
          kind: "spec",
          minute: only(0),
          hour: only(0),
          dom: only(1),
          month: only(1),
          dow: all(DOW),
        };
      case "@monthly":
        return {
          kind: "spec",
          minute: only(0),
          hour: only(0),
          dom: only(1),
          month: all(MONTHS),
          dow: all(DOW),
        };
      case "@weekly":
        return {
          kind: "spec",
          minute: only(0),
          hour: only(0),
          dom: all(DOM),
          month: all(MONTHS),
          dow: only(0),
        };
      case "@daily":
      case "@midnight":
        return {
          kind: "spec",
          minute: only(0),
          hour: only(0),
          dom: all(DOM),
          month: all(MONTHS),
          dow: all(DOW),
        };
      case "@hourly":
        return {
          kind: "spec",
          minute: only(0),
          hour: all(HOURS),
          dom: all(DOM),
          month: all(MONTHS),
          dow: all(DOW),
        };
    }
    if (spec.startsWith("@every ")) {
      const ms = parseGoDuration(spec.slice("@every ".length));
      // robfig rounds the delay down to whole seconds, at least one.
      return { kind: "every", delayMs: Math.max(1000, Math.floor(ms / 1000) * 1000) };
    }
    throw new CronSyntaxError(`unrecognized descriptor: ${spec}`);
  }
  const fields = spec.split(/\s+/).filter((f) => f !== "");
  if (fields.length !== 5)
    throw new CronSyntaxError(`expected exactly 5 fields, found ${fields.length}: ${spec}`);
  const [minute, hour, dom, month, dow] = fields as [string, string, string, string, string];
  return {
    kind: "spec",
    minute: getField(minute, MINUTES),
    hour: getField(hour, HOURS),
    dom: getField(dom, DOM),
    month: getField(month, MONTHS),
    dow: getField(dow, DOW),
  };
}

// --- Go's time package, for one location, on millisecond instants ---------

const formatters = new Map<string, Intl.DateTimeFormat>();
const offsets = new Map<string, number>();
const OFFSET_BUCKET = 15 * 60_000;

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/**
 * Offset of the zone from UTC at an instant, in ms. Zone transitions fall on
 * quarter hours, so one lookup per quarter hour is exact; cached because
 * Next() asks for many neighbouring instants.
 */
function offsetAt(instant: number, timeZone: string): number {
  if (timeZone === "UTC" || timeZone === "Etc/UTC") return 0;
  const bucket = Math.floor(instant / OFFSET_BUCKET) * OFFSET_BUCKET;
  const key = `${timeZone}|${bucket}`;
  const cached = offsets.get(key);
  if (cached !== undefined) return cached;
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(bucket)))
    if (p.type !== "literal") parts[p.type] = Number(p.value);
  const local = Date.UTC(
    parts.year ?? 0,
    (parts.month ?? 1) - 1,
    parts.day ?? 1,
    parts.hour ?? 0,
    parts.minute ?? 0,
    parts.second ?? 0,
  );
  const offset = local - bucket;
  if (offsets.size > 50_000) offsets.clear();
  offsets.set(key, offset);
  return offset;
}

interface Wall {
  year: number;
  month: number; // 1-12
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: number; // Sunday = 0
}

function wall(instant: number, timeZone: string): Wall {
  const d = new Date(instant + offsetAt(instant, timeZone));
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    weekday: d.getUTCDay(),
  };
}

/** Go's time.Date: normalises overflowing fields; in a gap or overlap uses Go's offset choice. */
function goDate(
  y: number,
  mo: number,
  d: number,
  h: number,
  mi: number,
  s: number,
  timeZone: string,
): number {
  const local = Date.UTC(y, mo - 1, d, h, mi, s);
  // Go looks the offset up at local-as-UTC, then re-looks it up at the UTC
  // instant that offset gives; the result is the offset in force there.
  const offset = offsetAt(local - offsetAt(local, timeZone), timeZone);
  return local - offset;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

function dayMatches(s: Extract<CronSchedule, { kind: "spec" }>, w: Wall): boolean {
  const domMatch = s.dom.bits[w.day] === true;
  const dowMatch = s.dow.bits[w.weekday] === true;
  if (s.dom.star || s.dow.star) return domMatch && dowMatch;
  return domMatch || dowMatch;
}

/** robfig's SpecSchedule.Next: the first activation strictly after `after`, or undefined within 5 years. */
export function nextActivation(
  schedule: CronSchedule,
  timeZone: string,
  after: Date,
): Date | undefined {
  let t = Math.floor(after.getTime() / SECOND) * SECOND;
  if (schedule.kind === "every") return new Date(t + schedule.delayMs);
  const s = schedule;
  t += SECOND;
  let added = false;
  const yearLimit = wall(t, timeZone).year + 5;
  // Each `continue wrap` is robfig's `goto WRAP`.
  wrap: for (;;) {
    let w = wall(t, timeZone);
    if (w.year > yearLimit) return undefined;
    while (s.month.bits[w.month] !== true) {
      if (!added) {
        added = true;
        t = goDate(w.year, w.month, 1, 0, 0, 0, timeZone);
        w = wall(t, timeZone);
      }
      t = goDate(w.year, w.month + 1, w.day, w.hour, w.minute, w.second, timeZone);
      w = wall(t, timeZone);
      if (w.month === 1) continue wrap;
    }
    while (!dayMatches(s, w)) {
      if (!added) {
        added = true;
        t = goDate(w.year, w.month, w.day, 0, 0, 0, timeZone);
        w = wall(t, timeZone);
      }
      t = goDate(w.year, w.month, w.day + 1, w.hour, w.minute, w.second, timeZone);
      w = wall(t, timeZone);
      // Notice if the hour is no longer midnight due to DST.
      if (w.hour !== 0) {
        t += w.hour > 12 ? (24 - w.hour) * HOUR : -w.hour * HOUR;
        w = wall(t, timeZone);
      }
      if (w.day === 1) continue wrap;
    }
    while (s.hour.bits[w.hour] !== true) {
      if (!added) {
        added = true;
        t = goDate(w.year, w.month, w.day, w.hour, 0, 0, timeZone);
        w = wall(t, timeZone);
      }
      t += HOUR;
      w = wall(t, timeZone);
      if (w.hour === 0) continue wrap;
    }
    while (s.minute.bits[w.minute] !== true) {
      if (!added) {
        added = true;
        t -= t % MINUTE;
        w = wall(t, timeZone);
      }
      t += MINUTE;
      w = wall(t, timeZone);
      if (w.minute === 0) continue wrap;
    }
    // Seconds: the standard parser only allows second 0.
    while (w.second !== 0) {
      if (!added) {
        added = true;
        t -= t % SECOND;
      }
      t += SECOND;
      w = wall(t, timeZone);
      if (w.second === 0) continue wrap;
    }
    return new Date(t);
  }
}
