// The circuit breaker, decided purely: Closed → Open after N consecutive
// failed runs; Open → HalfOpen (one trial run) after the cooldown; HalfOpen →
// Closed on the trial's success, or Open again with the cooldown doubled.
// Only the trial decides: runs started before the circuit opened may finish
// while it is open or half-open, and their outcomes are counted but change
// nothing. A trial that has not finished within its time (stuck Pending, say)
// counts as a failed trial, so the schedule can never stay suspended forever.
import type { BackgroundTaskSpec, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { parseDuration } from "../../crds/duration.ts";
import { isoSeconds as iso } from "../runtime/time.ts";

export type Circuit = NonNullable<BackgroundTaskStatus["circuit"]>;

/** Extra time a trial gets beyond its timeout before it counts as failed. */
export const TRIAL_GRACE_MS = 60_000;

export function isOpen(circuit: Circuit | undefined): boolean {
  return circuit?.state === "Open" || circuit?.state === "HalfOpen";
}

export interface RecordedOutcome {
  jobName: string;
  outcome: "Succeeded" | "Failed";
}

function opened(now: Date, cooldownSeconds: number, lastResetValue: string | undefined): Circuit {
  return {
    state: "Open",
    openedAt: iso(now),
    cooldownSeconds: Math.round(cooldownSeconds),
    ...(lastResetValue ? { lastResetValue } : {}),
  };
}

function closed(lastResetValue: string | undefined): Circuit {
  return { state: "Closed", ...(lastResetValue ? { lastResetValue } : {}) };
}

/** How long a trial may take before it counts as failed: the task's timeout, else the cooldown. */
export function trialTimeoutMs(spec: BackgroundTaskSpec, circuit: Circuit): number {
  const limit = spec.timeout
    ? parseDuration(spec.timeout)
    : (circuit.cooldownSeconds ?? parseDuration(spec.circuitBreaker?.cooldown ?? "30m") / 1000) *
      1000;
  return limit + TRIAL_GRACE_MS;
}

export interface CircuitDecision {
  circuit: Circuit | undefined;
  /** The trial ran out of time: its Job should go. */
  trialTimedOut?: string;
}

/** The circuit after recording runs (oldest first), at `now`. */
export function circuitAfterRuns(
  spec: BackgroundTaskSpec,
  circuit: Circuit | undefined,
  consecutiveFailures: number,
  recorded: RecordedOutcome[],
  now: Date,
): CircuitDecision {
  const breaker = spec.circuitBreaker;
  const resetValue = circuit?.lastResetValue;
  if (!breaker) return { circuit: resetValue ? closed(resetValue) : undefined };
  const baseCooldown = parseDuration(breaker.cooldown) / 1000;
  const doubled = () =>
    Math.min(
      parseDuration(breaker.maxCooldown) / 1000,
      (circuit?.cooldownSeconds ?? baseCooldown) * 2,
    );
  if (circuit?.state === "HalfOpen") {
    const trial = recorded.find((r) => r.jobName === circuit.trialJobName);
    if (trial?.outcome === "Succeeded") return { circuit: closed(resetValue) };
    if (trial?.outcome === "Failed") return { circuit: opened(now, doubled(), resetValue) };
    const started = circuit.trialStartedAt ? Date.parse(circuit.trialStartedAt) : Number.NaN;
    if (Number.isFinite(started) && now.getTime() >= started + trialTimeoutMs(spec, circuit))
      return {
        circuit: opened(now, doubled(), resetValue),
        ...(circuit.trialJobName ? { trialTimedOut: circuit.trialJobName } : {}),
      };
    return { circuit };
  }
  if (circuit?.state === "Open") return { circuit };
  if (consecutiveFailures >= breaker.failureThreshold)
    return { circuit: opened(now, baseCooldown, resetValue) };
  return { circuit: closed(resetValue) };
}

/** When an open circuit lets its trial run through. */
export function trialDueAt(circuit: Circuit): Date | undefined {
  if (circuit.state !== "Open" || !circuit.openedAt) return undefined;
  return new Date(Date.parse(circuit.openedAt) + (circuit.cooldownSeconds ?? 0) * 1000);
}

/** When a half-open circuit gives up on its trial. */
export function trialDeadline(spec: BackgroundTaskSpec, circuit: Circuit): Date | undefined {
  if (circuit.state !== "HalfOpen" || !circuit.trialStartedAt) return undefined;
  return new Date(Date.parse(circuit.trialStartedAt) + trialTimeoutMs(spec, circuit));
}

/** The half-open circuit once its trial Job has been started. */
export function halfOpen(circuit: Circuit, trialJobName: string, now: Date): Circuit {
  return {
    state: "HalfOpen",
    ...(circuit.openedAt ? { openedAt: circuit.openedAt } : {}),
    ...(circuit.cooldownSeconds !== undefined ? { cooldownSeconds: circuit.cooldownSeconds } : {}),
    trialJobName,
    trialStartedAt: iso(now),
    ...(circuit.lastResetValue ? { lastResetValue: circuit.lastResetValue } : {}),
  };
}
