// Conditions with Kubernetes semantics: lastTransitionTime moves only when a
// condition's status flips.
import type { Condition } from "../../crds/backgroundtask.ts";

export type ConditionInput = Omit<Condition, "lastTransitionTime">;

export function setCondition(
  existing: Condition[] | undefined,
  next: ConditionInput,
  now: string,
): Condition {
  const previous = existing?.find((c) => c.type === next.type);
  const lastTransitionTime =
    previous && previous.status === next.status ? previous.lastTransitionTime : now;
  return { ...next, lastTransitionTime };
}
