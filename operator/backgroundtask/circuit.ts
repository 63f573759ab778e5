// The circuit breaker, decided purely: Closed → Open after N consecutive
// failed runs; Open → HalfOpen (one trial run) after the cooldown; HalfOpen →
// Closed on the trial's success, or Open again with the cooldown doubled.
import type { BackgroundTaskSpec, BackgroundTaskStatus } from "../../crds/backgroundtask.ts";
import { parseDuration } from "../../crds/duration.ts";
import { isoSeconds as iso } from "../runtime/time.ts";

export type Circuit = NonNullable<BackgroundTaskStatus["circuit"]>;

export function isOpen(circuit: Circuit | undefined): boolean {
  return circuit?.state === "Open" || circuit?.state === "HalfOpen";
}

/** The circuit after recording runs: opens on the threshold, closes on a trial's (or any) success. */
export function circuitAfterRuns(
  spec: BackgroundTaskSpec,
  circuit: Circuit | undefined,
  consecutiveFailures: number,
  lastOutcome: "Succeeded" | "Failed" | undefined,
  now: Date,
): Circuit | undefined {
  const breaker = spec.circuitBreaker;
  if (!breaker)
    return circuit?.lastResetValue
      ? { state: "Closed", lastResetValue: circuit.lastResetValue }
      : undefined;
  const keep = circuit?.lastResetValue ? { lastResetValue: circuit.lastResetValue } : {};
  if (lastOutcome === "Succeeded" && isOpen(circuit)) return { state: "Closed", ...keep };
  if (circuit?.state === "HalfOpen" && lastOutcome === "Failed") {
    const cooldown = Math.min(
      parseDuration(breaker.maxCooldown) / 1000,
      (circuit.cooldownSeconds ?? parseDuration(breaker.cooldown) / 1000) * 2,
    );
    return { state: "Open", openedAt: iso(now), cooldownSeconds: Math.round(cooldown), ...keep };
  }
  if (!isOpen(circuit) && consecutiveFailures >= breaker.failureThreshold) {
    return {
      state: "Open",
      openedAt: iso(now),
      cooldownSeconds: Math.round(parseDuration(breaker.cooldown) / 1000),
      ...keep,
    };
  }
  return circuit ?? { state: "Closed" };
}

/** When an open circuit lets its trial run through. */
export function trialDueAt(circuit: Circuit): Date | undefined {
  if (circuit.state !== "Open" || !circuit.openedAt) return undefined;
  return new Date(Date.parse(circuit.openedAt) + (circuit.cooldownSeconds ?? 0) * 1000);
}
