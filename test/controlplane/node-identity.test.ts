// Real nodes of several harnesses share one machine: their identities must
// never collide, and must fit the kernel's limits.
import { describe, expect, it } from "vitest";
import { cniConfig } from "./node-config.ts";
import { freeSlot, MAX_SLOT, nodeIdentity, realNodeNamespaceAnnotations } from "./node-identity.ts";

describe("node identity", () => {
  it("gives every slot its own name, bridge, pod network, host address and cgroup root", () => {
    const all = Array.from({ length: MAX_SLOT }, (_, i) => nodeIdentity(i + 1));
    for (const key of [
      "nodeName",
      "bridge",
      "cniNetwork",
      "podCidr",
      "hostAddress",
      "cgroupRoot",
    ] as const)
      expect(new Set(all.map((n) => n[key])).size).toBe(MAX_SLOT);
    for (const node of all) {
      expect(node.bridge.length).toBeLessThanOrEqual(15); // IFNAMSIZ - 1
      expect(node.podCidr).toMatch(/^10\.245\.\d+\.0\/24$/); // outside kwok's 10.244.0.0/16
      expect(node.hostAddress).toBe(node.podCidr.replace(".0/24", ".1"));
    }
    expect(() => nodeIdentity(0)).toThrow();
    expect(() => nodeIdentity(MAX_SLOT + 1)).toThrow();
  });

  it("picks the lowest slot no live harness holds", () => {
    expect(freeSlot([])).toBe(1);
    expect(freeSlot([1, 2, 4])).toBe(3);
    expect(freeSlot(Array.from({ length: MAX_SLOT }, (_, i) => i + 1))).toBeUndefined();
  });

  it("routes a namespace's pods to real nodes through its annotations", () => {
    const annotations = realNodeNamespaceAnnotations();
    expect(annotations["scheduler.alpha.kubernetes.io/node-selector"]).toBe(
      "nightshift.dev/real-node=true",
    );
    expect(
      JSON.parse(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"] ?? ""),
    ).toEqual([{ key: "nightshift.dev/real-node", operator: "Exists", effect: "NoSchedule" }]);
  });

  it("gives pods a bridge that never forwards or masquerades, with the host as gateway", () => {
    const node = nodeIdentity(7);
    const config = JSON.parse(cniConfig(node, "/state"));
    expect(config.plugins[0]).toMatchObject({
      type: "bridge",
      bridge: "nsbr7",
      isGateway: false,
      ipMasq: false,
      ipam: {
        ranges: [[{ subnet: "10.245.7.0/24", gateway: "10.245.7.1" }]],
        dataDir: "/state/cni/ipam",
      },
    });
  });
});
