// Reading and writing BackgroundTasks through kubectl, as a user would.
import { eventually, kubectl, kubectlResult } from "./cluster.ts";

export interface Obj {
  metadata: Record<string, any>;
  spec: Record<string, any>;
  status?: Record<string, any>;
}

export function getJson(args: string[]): Obj | undefined {
  const r = kubectlResult(["get", ...args, "-o", "json"]);
  return r.ok ? (JSON.parse(r.output) as Obj) : undefined;
}

export function apply(manifest: object): void {
  kubectl(["apply", "-f", "-"], JSON.stringify(manifest));
}

export function task(
  namespace: string,
  name: string,
  spec: object,
  annotations?: Record<string, string>,
) {
  return {
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: { name, namespace, ...(annotations ? { annotations } : {}) },
    spec,
  };
}

export function condition(obj: Obj | undefined, type: string) {
  return (obj?.status?.conditions as Array<Record<string, string>> | undefined)?.find(
    (c) => c.type === type,
  );
}

export async function waitForCondition(
  namespace: string,
  name: string,
  type: string,
  status: string,
  reason?: string,
): Promise<Obj> {
  return eventually(
    () => {
      const obj = getJson(["bgt", name, "-n", namespace]);
      const c = condition(obj, type);
      return c?.status === status &&
        (!reason || c.reason === reason) &&
        obj?.status?.observedGeneration === obj?.metadata.generation
        ? obj
        : undefined;
    },
    { what: `${name} ${type}=${status}${reason ? ` (${reason})` : ""}` },
  );
}

/** Waits until the task's status satisfies the predicate; returns the task. */
export async function waitForStatus(
  namespace: string,
  name: string,
  what: string,
  predicate: (status: Record<string, any>) => boolean,
  timeoutMs = 30_000,
): Promise<Obj> {
  return eventually(
    () => {
      const obj = getJson(["bgt", name, "-n", namespace]);
      return obj?.status && predicate(obj.status) ? obj : undefined;
    },
    { what: `${name}: ${what}`, timeoutMs },
  );
}

export function jobsOf(namespace: string, taskName: string): Obj[] {
  const list = JSON.parse(
    kubectl([
      "get",
      "jobs",
      "-n",
      namespace,
      "-l",
      `nightshift.dev/task=${taskName}`,
      "-o",
      "json",
    ]),
  );
  return list.items as Obj[];
}

export function warningEvents(
  namespace: string,
  name: string,
  reason: string,
): Array<{ reason: string; message?: string }> {
  const out = kubectl([
    "get",
    "events",
    "-n",
    namespace,
    "--field-selector",
    `involvedObject.name=${name},reason=${reason}`,
    "-o",
    "json",
  ]);
  return JSON.parse(out).items;
}

export function podsOfJob(namespace: string, jobName: string): Obj[] {
  const list = JSON.parse(
    kubectl([
      "get",
      "pods",
      "-n",
      namespace,
      "-l",
      `batch.kubernetes.io/job-name=${jobName}`,
      "-o",
      "json",
    ]),
  );
  return list.items as Obj[];
}

/** Merge-patches a task's spec, as `kubectl patch bgt --type=merge` does. */
export function patchSpec(namespace: string, name: string, spec: Record<string, unknown>): void {
  kubectl(["patch", "bgt", name, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec })]);
}

/**
 * Applies an http.request task — scheduled once a year, so tests start its
 * runs themselves, unless `spec` overrides that — and waits until it is Ready.
 */
export async function readyTask(
  namespace: string,
  name: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  apply(
    task(namespace, name, {
      task: "http.request",
      schedule: "0 0 1 1 *",
      params: { url: "https://example.com" },
      ...spec,
    }),
  );
  await waitForCondition(namespace, name, "Ready", "True");
}
