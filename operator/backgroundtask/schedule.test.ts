import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nextActivation, parseStandard } from "./cron.ts";
import {
  nextScheduleTime,
  resolveSchedule,
  ScheduleError,
  validateResolvedSchedule,
} from "./schedule.ts";

describe("hashed schedules", () => {
  it("keeps every task's expanded schedule across operator versions", () => {
    // Pinned: a change here would move the runs of every task using H after an upgrade.
    expect(resolveSchedule("H H H H H", "team-a", "backup")).toBe("25 16 16 4 1");
    expect(resolveSchedule("H/15,H(30-40) H(9-17) H(1-28)/7 * H", "billing", "digest")).toBe(
      "12-59/15,31 17 3-28/7 * 0",
    );
  });

  it("expands H deterministically from namespace/name and within the field's range", () => {
    const a = resolveSchedule("H H * * *", "team-a", "backup");
    expect(resolveSchedule("H H * * *", "team-a", "backup")).toBe(a);
    const [minute, hour] = a.split(" ").map(Number);
    expect(minute).toBeGreaterThanOrEqual(0);
    expect(minute).toBeLessThanOrEqual(59);
    expect(hour).toBeGreaterThanOrEqual(0);
    expect(hour).toBeLessThanOrEqual(23);
  });

  it("spreads a thousand tasks at 'H 2 * * *' over the hour", () => {
    const minutes = new Set(
      Array.from(
        { length: 1000 },
        (_, i) => resolveSchedule("H 2 * * *", "ns", `task-${i}`).split(" ")[0],
      ),
    );
    expect(minutes.size).toBeGreaterThan(55);
  });

  it("supports H(a-b), H/n and lists", () => {
    const [m1, h1] = resolveSchedule("H(0-14) H(9-17) * * 1-5", "ns", "x").split(" ");
    expect(Number(m1)).toBeLessThanOrEqual(14);
    expect(Number(h1)).toBeGreaterThanOrEqual(9);
    expect(resolveSchedule("H/15 * * * *", "ns", "x")).toMatch(
      /^([0-9]|1[0-4])-59\/15 \* \* \* \*$/,
    );
    expect(resolveSchedule("0,H * * * *", "ns", "x")).toMatch(/^0,\d+ /);
  });

  it("explains schedules Kubernetes would reject", () => {
    expect(() => resolveSchedule("* * * *", "ns", "x")).toThrow("expected 5 fields");
    expect(() => resolveSchedule("@every 5m", "ns", "x")).toThrow(ScheduleError);
    expect(() => resolveSchedule("TZ=UTC 0 * * * *", "ns", "x")).toThrow("spec.timeZone");
    expect(() => validateResolvedSchedule("0 0 L * *")).toThrow("failed to parse int from L");
    expect(() => validateResolvedSchedule("0 0 * * 7")).toThrow("above maximum (6)");
    expect(() => resolveSchedule("@HOURLY", "ns", "x")).not.toThrow();
    expect(() => validateResolvedSchedule("@HOURLY")).toThrow("unrecognized descriptor");
    expect(() => validateResolvedSchedule("0 25 * * *")).toThrow(ScheduleError);
  });

  it("computes the next run in the schedule's time zone", () => {
    const after = new Date("2026-07-01T10:00:00Z");
    expect(nextScheduleTime("0 2 * * *", "Europe/Berlin", after)?.toISOString()).toBe(
      "2026-07-02T00:00:00.000Z",
    );
    expect(nextScheduleTime("@hourly", undefined, after)?.toISOString()).toBe(
      "2026-07-01T11:00:00.000Z",
    );
  });

  it("skips a day whose time falls in a daylight-saving gap, as the CronJob controller does", () => {
    // 2026-03-29 02:30 does not exist in Berlin; robfig/cron (the controller) skips to the next day.
    const after = new Date("2026-03-28T12:00:00Z");
    expect(nextScheduleTime("30 2 * * *", "Europe/Berlin", after)?.toISOString()).toBe(
      "2026-03-30T00:30:00.000Z",
    );
  });

  it("answers every instant as a fresh computation would, whatever order instants come in", () => {
    // nextScheduleTime keeps each schedule's last answer; asking in any order, across
    // daylight-saving changes and around the answer itself, must not tell the difference.
    const schedules = ["30 2 * * *", "0 * * * *", "*/7 1-3 * * 1-5", "0 0 1 1 *", "@hourly"];
    const zones = ["UTC", "Europe/Berlin", "America/New_York"];
    const start = Date.parse("2026-03-01T00:00:00Z");
    const instant = fc.oneof(
      fc.integer({ min: 0, max: 300 * 24 * 3600 }).map((s) => new Date(start + s * 1000)),
      fc.integer({ min: 0, max: 300 * 24 * 3600 * 1000 }).map((ms) => new Date(start + ms)),
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            schedule: fc.constantFrom(...schedules),
            zone: fc.constantFrom(...zones),
            after: instant,
          }),
          { minLength: 1, maxLength: 30 },
        ),
        (asks) => {
          for (const { schedule, zone, after } of asks) {
            const fresh = nextActivation(parseStandard(schedule), zone, after);
            expect(nextScheduleTime(schedule, zone, after)?.getTime()).toBe(fresh?.getTime());
            // The instant just before the answer reads the kept answer.
            if (fresh) {
              const justBefore = new Date(fresh.getTime() - 1);
              expect(nextScheduleTime(schedule, zone, justBefore)?.getTime()).toBe(
                nextActivation(parseStandard(schedule), zone, justBefore)?.getTime(),
              );
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
