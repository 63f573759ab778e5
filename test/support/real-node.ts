// For suites whose runs happen for real: the real node of this test run (or
// the one-line reason there is none, as a failure), namespaces routed to it,
// and the images the harness imported into it.
import { Watch } from "@kubernetes/client-node";
import { inject } from "vitest";
import { localReference } from "../../scripts/images/definitions.ts";
import { realNodeNamespaceAnnotations } from "../controlplane/node-identity.ts";
import { kubeConfig, kubectl } from "./cluster.ts";

export const RUNNER_IMAGE = localReference("nightshift/task-runner");
export const TESTBOX_IMAGE = "nightshift.local/testbox:1";

export interface RealNodeInfo {
  nodeName: string;
  /** Where pods reach services on the host (the node's bridge address). */
  hostAddress: string;
}

/** The real node; fails the calling suite with the harness's reason when there is none. */
export function realNode(): RealNodeInfo {
  const node = inject("realNode");
  if ("unavailable" in node) throw new Error(`this suite needs the real node: ${node.unavailable}`);
  return node;
}

/** Makes every pod of the namespace run on the real node (and tolerate its taint). */
export function routeToRealNode(namespace: string): void {
  kubectl([
    "annotate",
    "--overwrite",
    "namespace",
    namespace,
    ...Object.entries(realNodeNamespaceAnnotations()).map(([k, v]) => `${k}=${v}`),
  ]);
}

/** A URL on loopback (as the test process sees a peer) as pods on the real node reach it. */
export function forPods(url: string): string {
  return url.replace("127.0.0.1", realNode().hostAddress);
}

export interface Termination {
  pod: string;
  /** The pod's Job. */
  job: string;
  exitCode: number;
  reason?: string;
  message?: string;
}

/**
 * Every container termination in the namespace, from a watch: a pod the Job
 * controller deletes (e.g. at the deadline) shows its exit code and
 * termination message only briefly, and a watch misses no update.
 */
export async function watchTerminations(namespace: string) {
  const seen: Termination[] = [];
  const watch = new Watch(kubeConfig());
  let resourceVersion: string | undefined;
  let stopped = false;
  let controller: AbortController | undefined;
  // The client ends a watch after a while: resume from the last version seen.
  const start = async (): Promise<void> => {
    controller = await watch.watch(
      `/api/v1/namespaces/${namespace}/pods`,
      resourceVersion ? { resourceVersion } : {},
      (_phase, pod) => {
        resourceVersion = pod.metadata?.resourceVersion ?? resourceVersion;
        for (const status of pod.status?.containerStatuses ?? []) {
          const t = status.state?.terminated;
          if (t && !seen.some((s) => s.pod === pod.metadata.name))
            seen.push({
              pod: pod.metadata.name,
              job: pod.metadata.labels?.["batch.kubernetes.io/job-name"] ?? "",
              exitCode: t.exitCode,
              reason: t.reason,
              message: t.message,
            });
        }
      },
      () => {
        if (!stopped) start().catch(() => {});
      },
    );
  };
  await start();
  return {
    seen,
    stop: () => {
      stopped = true;
      controller?.abort();
    },
  };
}
