// Proves the local control plane is a real Kubernetes: real version, real
// admission, real Job/CronJob/GC controllers, kwok-driven pods, clean exits.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { BatchV1Api, CoreV1Api, type V1Job } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { ControlPlane } from "./controlplane/controlplane.ts";
import {
  createNamespace,
  eventually,
  kubeConfig,
  kubectl,
  kubectlResult,
} from "./support/cluster.ts";

const widgetCrd = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "widgets.cp-test.nightshift.dev" },
  spec: {
    group: "cp-test.nightshift.dev",
    names: { kind: "Widget", plural: "widgets", singular: "widget" },
    scope: "Namespaced",
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: {
                type: "object",
                required: ["size"],
                properties: { size: { type: "integer", minimum: 1, maximum: 10 } },
              },
            },
          },
        },
      },
    ],
  },
};

function jobFromCronJobTemplate(
  namespace: string,
  name: string,
  podLabels: Record<string, string>,
  podAnnotations: Record<string, string>,
) {
  return {
    apiVersion: "batch/v1",
    kind: "CronJob",
    metadata: { name, namespace },
    spec: {
      schedule: "0 0 1 1 *",
      jobTemplate: {
        spec: {
          backoffLimit: 0,
          template: {
            metadata: { labels: podLabels, annotations: podAnnotations },
            spec: { restartPolicy: "Never", containers: [{ name: "main", image: "busybox" }] },
          },
        },
      },
    },
  };
}

async function runJobFromCronJob(
  namespace: string,
  name: string,
  labels: Record<string, string>,
  annotations: Record<string, string>,
): Promise<V1Job> {
  kubectl(
    ["apply", "-f", "-"],
    JSON.stringify(jobFromCronJobTemplate(namespace, name, labels, annotations)),
  );
  // Exactly what `kubectl create job --from=cronjob/x` does: a Job from the CronJob's template.
  kubectl(["create", "job", `${name}-manual`, `--from=cronjob/${name}`, "-n", namespace]);
  const batch = kubeConfig().makeApiClient(BatchV1Api);
  return eventually(
    async () => {
      const job = await batch.readNamespacedJob({ name: `${name}-manual`, namespace });
      const done = job.status?.conditions?.find(
        (c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True",
      );
      return done ? job : undefined;
    },
    { what: `job ${name}-manual to finish`, timeoutMs: 60_000 },
  );
}

describe("local control plane", () => {
  it("serves Kubernetes v1.35 from /version", () => {
    const version = JSON.parse(kubectl(["version", "-o", "json"]));
    expect(version.serverVersion.gitVersion).toMatch(/^v1\.35\.\d+$/);
    expect(version.serverVersion.minor).toBe("35");
  });

  it("rejects an object that violates a structural CRD schema with the apiserver's message", async () => {
    kubectl(["apply", "-f", "-"], JSON.stringify(widgetCrd));
    kubectl([
      "wait",
      "--for=condition=Established",
      "crd/widgets.cp-test.nightshift.dev",
      "--timeout=30s",
    ]);
    const namespace = await createNamespace("cp-crd");
    const bad = {
      apiVersion: "cp-test.nightshift.dev/v1",
      kind: "Widget",
      metadata: { name: "big", namespace },
      spec: { size: 99 },
    };
    const result = await eventually(() => {
      const r = kubectlResult(["apply", "-f", "-"], JSON.stringify(bad));
      // Right after Established the discovery cache may still miss the kind; retry only that.
      return r.output.includes("no matches for kind") ? undefined : r;
    });
    expect(result.ok).toBe(false);
    expect(result.output).toContain(
      "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10",
    );
    const good = { ...bad, metadata: { name: "small", namespace }, spec: { size: 3 } };
    expect(kubectlResult(["apply", "-f", "-"], JSON.stringify(good)).ok).toBe(true);
  });

  it("runs a Job from a CronJob template to Complete on a kwok node", async () => {
    const namespace = await createNamespace("cp-job");
    const job = await runJobFromCronJob(namespace, "hello", {}, {});
    expect(job.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True")).toBe(
      true,
    );
    expect(job.status?.succeeded).toBe(1);
    const pods = await kubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespacedPod({ namespace, labelSelector: `job-name=hello-manual` });
    expect(pods.items[0]?.spec?.nodeName).toBe("kwok-node-0");
  });

  it("fails a Job whose pod kwok fails with exit code 75, and shows the code in the pod status", async () => {
    const namespace = await createNamespace("cp-fail");
    const job = await runJobFromCronJob(
      namespace,
      "tempfail",
      { "pod-container-running-failed.stage.kwok.x-k8s.io": "true" },
      { "pod-container-running-failed.stage.kwok.x-k8s.io/exit-code": "75" },
    );
    expect(job.status?.conditions?.some((c) => c.type === "Failed" && c.status === "True")).toBe(
      true,
    );
    const pods = await kubeConfig()
      .makeApiClient(CoreV1Api)
      .listNamespacedPod({ namespace, labelSelector: "job-name=tempfail-manual" });
    const terminated = pods.items[0]?.status?.containerStatuses?.[0]?.state?.terminated;
    expect(terminated?.exitCode).toBe(75);
    expect(pods.items[0]?.status?.phase).toBe("Failed");
  });

  it("deletes dependents when their owner is deleted (garbage collector)", async () => {
    const namespace = await createNamespace("cp-gc");
    const core = kubeConfig().makeApiClient(CoreV1Api);
    const owner = await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: "owner" } },
    });
    await core.createNamespacedConfigMap({
      namespace,
      body: {
        metadata: {
          name: "dependent",
          ownerReferences: [
            { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata?.uid ?? "" },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ name: "owner", namespace });
    await eventually(
      async () => {
        const list = await core.listNamespacedConfigMap({
          namespace,
          fieldSelector: "metadata.name=dependent",
        });
        return list.items.length === 0 ? true : undefined;
      },
      { what: "dependent to be garbage collected" },
    );
  });
});

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Alive and not a zombie waiting to be reaped. */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe("control plane lifecycle", () => {
  it("starts and stops twice in a row leaving no process and no port behind", async () => {
    for (let round = 0; round < 2; round++) {
      const plane = new ControlPlane();
      await plane.start();
      const pids = plane.pids;
      const ports = Object.values(plane.ports);
      expect(pids.length).toBe(5);
      expect(await portOpen(plane.ports.apiserver ?? 0)).toBe(true);
      await plane.stop();
      expect(pids.filter(processAlive)).toEqual([]);
      const stillOpen = [];
      for (const port of ports) if (await portOpen(port)) stillOpen.push(port);
      expect(stillOpen).toEqual([]);
    }
  }, 300_000);

  it("kills every child when the supervising process is killed with SIGKILL", async () => {
    // A separate supervisor process that we kill without giving it a chance to clean up.
    const script = `
      import { ControlPlane } from ${JSON.stringify(new URL("./controlplane/controlplane.ts", import.meta.url).pathname)};
      const plane = new ControlPlane();
      await plane.start();
      console.log(JSON.stringify(plane.pids));
      setInterval(() => {}, 1 << 30);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    const pids: number[] = await eventually(
      () => (out.includes("]") ? JSON.parse(out.trim()) : undefined),
      {
        timeoutMs: 120_000,
        what: "supervisor to start",
      },
    );
    expect(pids.every(processAlive)).toBe(true);
    child.kill("SIGKILL");
    await eventually(() => (pids.some(processAlive) ? undefined : true), {
      what: "children to die",
      timeoutMs: 10_000,
    });
  }, 300_000);
});
