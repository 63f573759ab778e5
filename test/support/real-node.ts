// For suites whose runs happen for real: the real node of this test run (or
// the one-line reason there is none, as a failure), namespaces routed to it,
// and the images the harness imported into it.
import { inject } from "vitest";
import { localReference } from "../../scripts/images/definitions.ts";
import { realNodeNamespaceAnnotations } from "../controlplane/node-identity.ts";
import { kubectl } from "./cluster.ts";

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
