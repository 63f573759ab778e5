// What every end-to-end suite needs from the shared control plane: clients,
// a namespace of its own, kubectl, and polling for eventual state.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, KubernetesObjectApi } from "@kubernetes/client-node";
import { inject } from "vitest";

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject("kubeconfigPath"));
  return kc;
}

export function kubectl(args: string[], input?: string): string {
  return execFileSync(
    join(inject("binDir"), "kubectl"),
    [`--kubeconfig=${inject("kubeconfigPath")}`, ...args],
    {
      encoding: "utf8",
      input,
      stdio: ["pipe", "pipe", "pipe"],
      // Lists of hundreds of Jobs run to megabytes.
      maxBuffer: 256 * 1024 * 1024,
    },
  );
}

/** kubectl that returns its failure output instead of throwing. */
export function kubectlResult(args: string[], input?: string): { ok: boolean; output: string } {
  try {
    return { ok: true, output: kubectl(args, input) };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

export async function createNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString("hex")}`;
  await kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name } } });
  return name;
}

export function objectApi(): KubernetesObjectApi {
  return KubernetesObjectApi.makeApiClient(kubeConfig());
}

export { eventually, sleep } from "./eventually.ts";
