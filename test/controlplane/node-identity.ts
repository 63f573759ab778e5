// Everything machine-global about one real node, derived from its slot: several
// harnesses (other checkouts' test runs, CI, a demo) run real nodes on one
// machine at once, so names, addresses and cgroups must never collide.

/** Slots 1..MAX_SLOT; each owns 10.245.<slot>.0/24, outside kwok's 10.244.0.0/16. */
export const MAX_SLOT = 254;

/** Label and taint key of real nodes; namespaces route pods to them by it. */
export const REAL_NODE_KEY = "nightshift.dev/real-node";

export interface NodeIdentity {
  slot: number;
  nodeName: string;
  /** Linux bridge of the node's pods (at most 15 characters). */
  bridge: string;
  /** CNI network name, also the prefix of libcni's cache files. */
  cniNetwork: string;
  podCidr: string;
  /** The bridge's address: pods reach services on the host here. */
  hostAddress: string;
  /** The node's own cgroup subtree, in every hierarchy. */
  cgroupRoot: string;
}

export function nodeIdentity(slot: number): NodeIdentity {
  if (!Number.isInteger(slot) || slot < 1 || slot > MAX_SLOT)
    throw new Error(`node slot must be 1..${MAX_SLOT}, got ${slot}`);
  const nodeName = `nightshift-node-${slot}`;
  return {
    slot,
    nodeName,
    bridge: `nsbr${slot}`,
    cniNetwork: `nightshift-${slot}`,
    podCidr: `10.245.${slot}.0/24`,
    hostAddress: `10.245.${slot}.1`,
    cgroupRoot: `/${nodeName}`,
  };
}

/** The lowest slot no live harness holds, or undefined when all are taken. */
export function freeSlot(taken: Iterable<number>): number | undefined {
  const used = new Set(taken);
  for (let slot = 1; slot <= MAX_SLOT; slot++) if (!used.has(slot)) return slot;
  return undefined;
}

/**
 * Pod annotations of a namespace whose pods all run on the real node:
 * PodNodeSelector adds the node selector, PodTolerationRestriction the
 * toleration of the node's taint (kwok's fake nodes never match).
 */
export function realNodeNamespaceAnnotations(): Record<string, string> {
  return {
    "scheduler.alpha.kubernetes.io/node-selector": `${REAL_NODE_KEY}=true`,
    "scheduler.alpha.kubernetes.io/defaultTolerations": JSON.stringify([
      { key: REAL_NODE_KEY, operator: "Exists", effect: "NoSchedule" },
    ]),
  };
}
