// The machine's registry of real nodes (/run/nightshift-nodes): which slot
// each live harness holds, so identities never collide; which slots belong to
// a harness that died (swept by the next one to start); the kernel settings
// as they were before the first node, restored when the last one leaves.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { freeSlot } from "./node-identity.ts";

const REGISTRY = process.env.NIGHTSHIFT_NODE_REGISTRY ?? "/run/nightshift-nodes";
const LOCK = join(REGISTRY, ".lock");
const SAVED_SYSCTLS = join(REGISTRY, "sysctl.saved");
const SAVED_PATHS = join(REGISTRY, "preexisting.json");

export interface SlotRecord {
  slot: number;
  /** The harness process holding the slot, with its start time (pids are reused). */
  pid: number;
  startTime: string;
  /** The node's state folder. */
  state: string;
}

function processStartTime(pid: number): string | undefined {
  try {
    // Field 22 of /proc/<pid>/stat, counted after the parenthesised command name.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

export function isLive(record: SlotRecord): boolean {
  return processStartTime(record.pid) === record.startTime;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs `fn` holding the registry's lock (mkdir is atomic); a lock older than 60 s is broken. */
export function withRegistryLock<T>(fn: () => T): T {
  mkdirSync(REGISTRY, { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 60_000) rmSync(LOCK, { recursive: true });
      } catch {}
      if (Date.now() > deadline) throw new Error(`could not take ${LOCK} within 120 s`);
      sleepSync(50);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

function slotFile(slot: number): string {
  return join(REGISTRY, `slot-${slot}.json`);
}

export function slotRecords(): SlotRecord[] {
  if (!existsSync(REGISTRY)) return [];
  return readdirSync(REGISTRY)
    .filter((f) => /^slot-\d+\.json$/.test(f))
    .flatMap((f) => {
      try {
        return [JSON.parse(readFileSync(join(REGISTRY, f), "utf8")) as SlotRecord];
      } catch {
        return [];
      }
    });
}

function adoptStale(records: SlotRecord[]): SlotRecord[] {
  const me = { pid: process.pid, startTime: processStartTime(process.pid) ?? "" };
  const stale = records.filter((r) => !isLive(r)).map((r) => ({ ...r, ...me }));
  for (const record of stale) writeFileSync(slotFile(record.slot), JSON.stringify(record));
  return stale;
}

/** Takes over the slots of dead harnesses, to sweep and release them. */
export function takeStaleSlots(): SlotRecord[] {
  return withRegistryLock(() => adoptStale(slotRecords()));
}

export interface Claim {
  slot: number;
  /** Slots of harnesses that died; now held by this process until swept and released. */
  stale: SlotRecord[];
}

/**
 * Claims a free slot for a node whose state lives in `stateFor(slot)`. The first
 * live node on the machine saves the kernel settings and which shared paths exist.
 */
export function claimSlot(
  stateFor: (slot: number) => string,
  sysctls: string[],
  sharedPaths: string[],
  readSysctl: (name: string) => string | undefined,
): Claim {
  return withRegistryLock(() => {
    const me = { pid: process.pid, startTime: processStartTime(process.pid) ?? "" };
    const records = slotRecords();
    const stale = adoptStale(records);
    const live = records.filter(isLive);
    const slot = freeSlot(records.map((r) => r.slot));
    if (slot === undefined) throw new Error(`every real-node slot in ${REGISTRY} is taken`);
    if (live.length === 0 && stale.length === 0) {
      const saved = sysctls.flatMap((name) => {
        const value = readSysctl(name);
        return value === undefined ? [] : [`${name}=${value}`];
      });
      writeFileSync(SAVED_SYSCTLS, `${saved.join("\n")}\n`);
      writeFileSync(SAVED_PATHS, JSON.stringify(sharedPaths.filter((p) => existsSync(p))));
    }
    writeFileSync(slotFile(slot), JSON.stringify({ slot, ...me, state: stateFor(slot) }));
    return { slot, stale };
  });
}

export interface LastNodeCleanup {
  /** name=value lines saved by the first node. */
  sysctls: string[];
  /** Shared paths that existed before the first node (leave those alone). */
  preexisting: string[];
}

/**
 * Releases a slot. When no other node is left on the machine, `lastOut` gets what
 * the first node saved, to put the machine back as it was.
 */
export function releaseSlot(slot: number, lastOut: (saved: LastNodeCleanup) => void): void {
  withRegistryLock(() => {
    rmSync(slotFile(slot), { force: true });
    if (slotRecords().length > 0) return;
    const read = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "");
    lastOut({
      sysctls: read(SAVED_SYSCTLS).split("\n").filter(Boolean),
      preexisting: JSON.parse(read(SAVED_PATHS) || "[]"),
    });
    rmSync(SAVED_SYSCTLS, { force: true });
    rmSync(SAVED_PATHS, { force: true });
  });
  try {
    rmdirSync(REGISTRY); // only when empty: another harness may have claimed since
  } catch {}
}
