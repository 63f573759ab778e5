// Runs the operator under the chart's memory limit, as its pod runs: Node sizes V8's heap
// from the cgroup's limit (268 MB under 512 MiB with the image's flags, against 4,288 MB on a
// 24 GiB host), so
// outside a cgroup the garbage collector waits longer and the peaks measured are not the pod's.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { quantityFraction } from "../operator/backgroundtask/quantity.ts";

export interface MemoryCgroup {
  limit: MemoryLimit;
  /** V8's heap limit, in MB, of the operator's Node started inside: what the limit does to it. */
  v8HeapLimitMb: number;
  dir: string;
  /** `command` joining the cgroup before it starts, so Node reads the limit at startup. */
  wrap(command: string[]): string[];
  remove(): void;
}

export interface MemoryLimit {
  /** As the chart spells it, e.g. "512Mi". */
  text: string;
  bytes: number;
}

/** The operator container's memory limit in the chart's values. */
export function chartMemoryLimit(valuesPath: string): MemoryLimit {
  const values = parse(readFileSync(valuesPath, "utf8"));
  const text = values?.resources?.limits?.memory;
  const fraction = typeof text === "string" ? quantityFraction(text) : undefined;
  if (!fraction) throw new Error(`${valuesPath}: resources.limits.memory is not a quantity`);
  return { text, bytes: Number(fraction[0] / fraction[1]) };
}

/** Our own cgroup's directory: the v2 one, or the one in v1's memory hierarchy. */
function ownCgroupDir(v2: boolean): string | undefined {
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const [, controllers = "", path] = line.split(":");
    if (path === undefined) continue;
    if (v2 ? controllers === "" : controllers.split(",").includes("memory"))
      return join(v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory", path);
  }
  return undefined;
}

/**
 * A memory cgroup (v2, or v1's memory hierarchy) limited to `limit`, made inside our own so
 * that any limit around us still holds, and proven by starting `node` with `nodeFlags` in it;
 * or why this machine does not let us (not root, no memory controller, v2's rule against
 * processes in a cgroup with children).
 */
export function createMemoryCgroup(
  name: string,
  limit: MemoryLimit,
  node: string,
  nodeFlags: string[],
): MemoryCgroup | { unavailable: string } {
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const parent = ownCgroupDir(v2);
  if (!parent || !existsSync(join(parent, "cgroup.procs")))
    return { unavailable: `no memory cgroup of ours under /sys/fs/cgroup` };
  const dir = join(parent, name);
  try {
    if (v2) {
      const enabled = readFileSync(join(parent, "cgroup.subtree_control"), "utf8");
      if (!enabled.trim().split(/\s+/).includes("memory"))
        writeFileSync(join(parent, "cgroup.subtree_control"), "+memory");
    }
    if (!existsSync(dir)) mkdirSync(dir);
    writeFileSync(join(dir, v2 ? "memory.max" : "memory.limit_in_bytes"), String(limit.bytes));
  } catch (error) {
    return { unavailable: `cannot make ${dir}: ${(error as Error).message}` };
  }
  const procs = join(dir, "cgroup.procs");
  // $0 is the procs file; the shell joins the cgroup, then becomes the command.
  const wrap = (command: string[]) => [
    "sh",
    "-c",
    'echo $$ > "$0" && exec "$@"',
    procs,
    ...command,
  ];
  const [sh, ...args] = wrap([
    node,
    ...nodeFlags,
    "-p",
    "require('node:v8').getHeapStatistics().heap_size_limit",
  ]);
  let v8HeapLimitMb: number;
  try {
    v8HeapLimitMb = Number(execFileSync(sh as string, args, { encoding: "utf8" })) / 2 ** 20;
  } catch (error) {
    return { unavailable: `cannot start a process in ${dir}: ${(error as Error).message}` };
  }
  return {
    limit,
    v8HeapLimitMb,
    dir,
    wrap,
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {} // still busy: the next run reuses it
    },
  };
}
