// Delayed retry runs: after a run fails for good, start another one after an
// exponential backoff with jitter, unless the next scheduled run comes first.
import type { BackgroundTaskSpec, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { parseDuration } from "../../crds/duration.ts";
import { isoSeconds } from "../runtime/time.ts";

export type RetryState = NonNullable<BackgroundTaskStatus["retry"]>;

/** Delay before retry number `attempt` (0-based): initial × factor^attempt, capped, ±20 % jitter. */
export function retryDelayMs(
  spec: BackgroundTaskSpec,
  attempt: number,
  random: () => number = Math.random,
): number {
  const backoff = spec.retry?.backoff;
  if (!backoff) return 0;
  const base = Math.min(
    parseDuration(backoff.maxDelay),
    parseDuration(backoff.initialDelay) * backoff.factor ** attempt,
  );
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * The retry state after a run failed for good at `failedAt`: a scheduled or
 * manual run starts the series again; a failed retry run moves it on. No
 * retry when backoff is off, the series is exhausted, or the next scheduled
 * run would come first anyway.
 */
export function planRetry(
  spec: BackgroundTaskSpec,
  failedRunKind: string,
  previous: RetryState | undefined,
  failedAt: Date,
  nextScheduleTime: Date | undefined,
  random: () => number = Math.random,
): RetryState | undefined {
  const backoff = spec.retry?.backoff;
  if (!backoff || backoff.maxRetries === 0) return undefined;
  const attempt = failedRunKind === "retry" ? (previous?.attempt ?? 0) : 0;
  if (attempt >= backoff.maxRetries) return undefined;
  const at = new Date(failedAt.getTime() + retryDelayMs(spec, attempt, random));
  if (nextScheduleTime && at.getTime() >= nextScheduleTime.getTime()) return undefined;
  return { attempt, nextRetryTime: isoSeconds(at) };
}
