// A run pod whose Secret or ConfigMap reference is missing never starts: the
// kubelet leaves its container waiting with CreateContainerConfigError and a
// message naming the object. That is how the operator learns of a missing
// reference without any read access to Secrets.

export const CONFIG_ERROR_REASON = "CreateContainerConfigError";

export interface MissingReference {
  kind: "Secret" | "ConfigMap";
  name: string;
}

interface PodStatus {
  containerStatuses?: Array<{ state?: { waiting?: { reason?: string; message?: string } } }>;
}

// The kubelet's wording: `secret "name" not found`, `configmap "name" not found`
// (and `secrets "name" not found` when the error came straight from the API).
const NOT_FOUND = /\b(secrets?|configmaps?) "([^"]+)" not found/i;

/** The Secret or ConfigMap a waiting container's message says is missing, if any. */
export function missingReferenceIn(message: string | undefined): MissingReference | undefined {
  const match = message ? NOT_FOUND.exec(message) : null;
  if (!match?.[1] || !match[2]) return undefined;
  const kind = match[1].toLowerCase().startsWith("secret") ? "Secret" : "ConfigMap";
  return { kind, name: match[2] };
}

/** Missing references reported by a pod's containers, as "Secret/name" / "ConfigMap/name". */
export function missingReferencesOf(pod: Record<string, unknown>): string[] {
  const found = new Set<string>();
  for (const container of (pod.status as PodStatus | undefined)?.containerStatuses ?? []) {
    const waiting = container.state?.waiting;
    if (waiting?.reason !== CONFIG_ERROR_REASON) continue;
    const missing = missingReferenceIn(waiting.message);
    if (missing) found.add(`${missing.kind}/${missing.name}`);
  }
  return [...found].sort();
}
