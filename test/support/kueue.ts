// Kueue for one describe block (started before, stopped after), and the
// cluster objects a queueing test needs.
import { afterAll, beforeAll, inject } from "vitest";
import { KUEUE_NAMESPACE_LABEL, type KueueController, startKueue } from "../controlplane/kueue.ts";
import { eventually, kubectl, kubectlResult } from "./cluster.ts";

export function kueueForSuite(): void {
  let kueue: KueueController | undefined;
  beforeAll(async () => {
    kueue = await startKueue({
      kubeconfigPath: inject("kubeconfigPath"),
      binDir: inject("binDir"),
      log: (line) => process.stderr.write(`[kueue] ${line}\n`),
    });
  }, 300_000);
  afterAll(async () => {
    await kueue?.stop();
  });
}

/** Lets Kueue manage the Jobs of a namespace. */
export function enableKueue(namespace: string): void {
  kubectl([
    "label",
    "namespace",
    namespace,
    `${KUEUE_NAMESPACE_LABEL.key}=${KUEUE_NAMESPACE_LABEL.value}`,
    "--overwrite",
  ]);
}

/** Applies through Kueue's webhooks, retrying while they come up. */
export async function applyKueue(objects: object[]): Promise<void> {
  const list = JSON.stringify({ apiVersion: "v1", kind: "List", items: objects });
  await eventually(
    () => {
      const result = kubectlResult(["apply", "--server-side", "-f", "-"], list);
      if (!result.ok) throw new Error(result.output);
      return true;
    },
    { what: "Kueue objects applied", timeoutMs: 60_000 },
  );
}

export function clusterQueue(
  name: string,
  cpu: number,
  options: { hold?: boolean; preemption?: boolean; strict?: boolean } = {},
): object {
  return {
    apiVersion: "kueue.x-k8s.io/v1beta2",
    kind: "ClusterQueue",
    metadata: { name },
    spec: {
      namespaceSelector: {},
      // StrictFIFO: strictly by priority, then age; BestEffortFIFO may let a later run
      // through while the queue's head waits to be retried.
      queueingStrategy: options.strict ? "StrictFIFO" : "BestEffortFIFO",
      ...(options.hold ? { stopPolicy: "Hold" } : { stopPolicy: "None" }),
      preemption: { withinClusterQueue: options.preemption ? "LowerPriority" : "Never" },
      resourceGroups: [
        {
          coveredResources: ["cpu", "memory"],
          flavors: [
            {
              name: "nightshift-test-flavor",
              resources: [
                { name: "cpu", nominalQuota: String(cpu) },
                { name: "memory", nominalQuota: `${cpu}Gi` },
              ],
            },
          ],
        },
      ],
    },
  };
}

export const resourceFlavor = {
  apiVersion: "kueue.x-k8s.io/v1beta2",
  kind: "ResourceFlavor",
  metadata: { name: "nightshift-test-flavor" },
  spec: {},
};

export function localQueue(namespace: string, name: string, clusterQueueName: string): object {
  return {
    apiVersion: "kueue.x-k8s.io/v1beta2",
    kind: "LocalQueue",
    metadata: { name, namespace },
    spec: { clusterQueue: clusterQueueName },
  };
}

/** The PriorityClasses and WorkloadPriorityClasses of the README, by level. */
export const PRIORITY_VALUES = {
  "nightshift-low": -100,
  "nightshift-high": 1000,
  "nightshift-critical": 100000,
} as const;

export function priorityClasses(): object[] {
  return Object.entries(PRIORITY_VALUES).flatMap(([name, value]) => [
    {
      apiVersion: "scheduling.k8s.io/v1",
      kind: "PriorityClass",
      metadata: { name },
      value,
      preemptionPolicy: "Never",
      description: "Nightshift task priority",
    },
    {
      apiVersion: "kueue.x-k8s.io/v1beta2",
      kind: "WorkloadPriorityClass",
      metadata: { name },
      value,
      description: "Nightshift task priority",
    },
  ]);
}
