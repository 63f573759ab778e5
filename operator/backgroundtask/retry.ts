// Delayed retry runs: after a run fails for good, start another one after an
// exponential backoff with jitter, unless the next scheduled run comes first.
// Everything a restarted operator must reproduce — the jittered time and the
// retry Job's name — derives from the failed run's UID and the attempt number,
// so deciding twice (after a crash or a conflicting write) decides the same.
import { createHash } from "node:crypto";
import type { BackgroundTaskSpec, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { parseDuration } from "../../crds/duration.ts";
import { isoSeconds } from "../runtime/time.ts";

export type RetryState = NonNullable<BackgroundTaskStatus["retry"]>;

/** A number in [0, 1) fixed by the seed: the jitter of one retry. */
export function stableFraction(seed: string): number {
  return createHash("sha256").update(seed).digest().readUInt32BE(0) / 2 ** 32;
}

/** Delay before retry number `attempt` (0-based): initial × factor^attempt, capped, ±20 % jitter. */
export function retryDelayMs(spec: BackgroundTaskSpec, attempt: number, jitter: number): number {
  const backoff = spec.retry?.backoff;
  if (!backoff) return 0;
  const base = Math.min(
    parseDuration(backoff.maxDelay),
    parseDuration(backoff.initialDelay) * backoff.factor ** attempt,
  );
  return Math.round(base * (0.8 + 0.4 * jitter));
}

export interface FailedRunFacts {
  uid: string;
  kind: string;
  finishedAt: Date;
}

/**
 * The retry planned after a run failed for good: a scheduled or manual run
 * starts the series again; a failed retry run moves it on. No retry when
 * backoff is off, the series is exhausted, or the next scheduled run would
 * come first anyway. `jobName(seed)` names the retry Job from the seed.
 */
export function planRetry(
  spec: BackgroundTaskSpec,
  failed: FailedRunFacts,
  previous: RetryState | undefined,
  nextScheduleTime: Date | undefined,
  jobName: (seed: string) => string,
): RetryState | undefined {
  const backoff = spec.retry?.backoff;
  if (!backoff || backoff.maxRetries === 0) return undefined;
  const attempt = failed.kind === "retry" ? (previous?.attempt ?? 0) : 0;
  if (attempt >= backoff.maxRetries) return undefined;
  const seed = `${failed.uid}/${attempt}`;
  const at = new Date(
    failed.finishedAt.getTime() + retryDelayMs(spec, attempt, stableFraction(seed)),
  );
  if (nextScheduleTime && at.getTime() >= nextScheduleTime.getTime()) return undefined;
  return { attempt, nextRetryTime: isoSeconds(at), jobName: jobName(seed) };
}
