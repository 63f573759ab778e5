// spec.volumes, volumeMounts, nodeSelector, tolerations, affinity and
// imagePullSecrets: rejected at admission naming the field when the schema
// can tell, SpecValid=False naming it when only the operator can, and carried
// into the CronJob's pod template (with a writable /tmp under the read-only
// root, and Pod Security "restricted" met).
import { describe, expect, it } from "vitest";
import { kubectl, kubectlResult } from "./support/cluster.ts";
import { operatorForSuite } from "./support/operator.ts";
import { getJson, readyTask, task } from "./support/tasks.ts";

const cleanup = { task: "files.cleanup-temp", params: { paths: ["/data"], olderThan: "1h" } };

describe("run pod fields", () => {
  const suite = operatorForSuite("runpod");

  it.each([
    [
      { volumes: [{ name: "data", emptyDir: {}, configMap: { name: "x" } }] },
      "exactly one of persistentVolumeClaim, emptyDir, configMap, secret or csi must be set",
    ],
    [{ volumes: [{ name: "Data", emptyDir: {} }] }, "spec.volumes[0].name"],
    [{ volumes: [{ name: "nightshift-tmp", emptyDir: {} }] }, "reserved for the run's /tmp"],
    [
      { volumes: [{ name: "a", emptyDir: {} }], volumeMounts: [{ name: "b", mountPath: "/b" }] },
      "spec.volumeMounts: Invalid value",
    ],
    [
      { volumes: [{ name: "a", emptyDir: {} }], volumeMounts: [{ name: "a", mountPath: "rel" }] },
      "spec.volumeMounts[0].mountPath",
    ],
    [
      {
        volumes: [{ name: "a", emptyDir: {} }],
        volumeMounts: [{ name: "a", mountPath: "/a", subPath: "../etc" }],
      },
      "spec.volumeMounts[0].subPath",
    ],
    [
      {
        volumes: [
          { name: "a", emptyDir: {} },
          { name: "a", emptyDir: {} },
        ],
      },
      "spec.volumes[1]: Duplicate value",
    ],
    [
      { volumes: [{ name: "h", hostPath: { path: "/" } }] },
      'unknown field "spec.volumes[0].hostPath"',
    ],
    [
      { tolerations: [{ key: "k", operator: "Exists", value: "v" }] },
      "value must be empty when operator is Exists",
    ],
    [{ tolerations: [{ effect: "Sometimes" }] }, "spec.tolerations[0].effect: Unsupported value"],
    [
      {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator: "Near" }] }],
            },
          },
        },
      },
      "operator: Unsupported value",
    ],
    [{ imagePullSecrets: [{ name: "Not_A_Name" }] }, "spec.imagePullSecrets[0].name"],
    [{ nodeSelector: { disk: 1 } }, "spec.nodeSelector.disk"],
  ])("rejects at admission with the field named: %j", (fields, message) => {
    const result = kubectlResult(
      ["apply", "-f", "-"],
      JSON.stringify(task(suite.ns, "rejected", { ...cleanup, ...fields })),
    );
    expect(result.ok).toBe(false);
    expect(result.output).toContain(message);
  });

  it("puts volumes, mounts, a writable /tmp and placement into the run pod template", async () => {
    kubectl(["create", "configmap", "settings", "-n", suite.ns, "--from-literal=a=1"]);
    kubectl(["create", "secret", "generic", "pull", "-n", suite.ns, "--from-literal=x=y"]);
    const spec = {
      ...cleanup,
      volumes: [
        { name: "data", persistentVolumeClaim: { claimName: "files" } },
        { name: "cache", emptyDir: { sizeLimit: "1Gi" } },
        { name: "settings", configMap: { name: "settings" } },
        { name: "creds", secret: { secretName: "maybe", optional: true } },
        { name: "scratch", csi: { driver: "scratch.csi.example.com", readOnly: false } },
      ],
      volumeMounts: [
        { name: "data", mountPath: "/data" },
        { name: "settings", mountPath: "/etc/settings", readOnly: true },
      ],
      nodeSelector: { "disk-type": "ssd" },
      tolerations: [{ key: "dedicated", operator: "Equal", value: "batch", effect: "NoSchedule" }],
      affinity: {
        nodeAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 10,
              preference: { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] },
            },
          ],
        },
      },
      imagePullSecrets: [{ name: "pull" }],
    };
    await readyTask(suite.ns, "placed", spec);
    const pod = getJson(["cronjob", "placed", "-n", suite.ns])?.spec.jobTemplate.spec.template.spec;
    expect(pod.volumes.map((v: { name: string }) => v.name)).toEqual([
      "data",
      "cache",
      "settings",
      "creds",
      "scratch",
      "nightshift-tmp",
    ]);
    expect(pod.volumes.at(-1)).toEqual({ name: "nightshift-tmp", emptyDir: {} });
    expect(pod.containers[0].volumeMounts).toEqual([
      { name: "data", mountPath: "/data" },
      { name: "settings", mountPath: "/etc/settings", readOnly: true },
      { name: "nightshift-tmp", mountPath: "/tmp" },
    ]);
    expect(pod.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    expect(pod.nodeSelector).toEqual({ "disk-type": "ssd" });
    expect(pod.tolerations).toEqual(spec.tolerations);
    expect(pod.affinity).toEqual(spec.affinity);
    expect(pod.imagePullSecrets).toEqual([{ name: "pull" }]);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, fsGroup: 65532 });
  });

  it("creates run pods a Pod Security 'restricted' namespace admits", async () => {
    kubectl(["label", "namespace", suite.ns, "pod-security.kubernetes.io/enforce=restricted"]);
    await readyTask(suite.ns, "restricted", cleanup);
    const template = getJson(["cronjob", "restricted", "-n", suite.ns])?.spec.jobTemplate.spec
      .template;
    // The apiserver's PodSecurity admission answers a server-side dry run as it would a real pod.
    const result = kubectlResult(
      ["create", "--dry-run=server", "-n", suite.ns, "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "probe" },
        spec: template.spec,
      }),
    );
    expect(result.output).not.toContain("violates PodSecurity");
    expect(result.ok).toBe(true);
  });
});
