// Load-aware starts: 200 tasks due in the same minute start no faster than
// the operator's cluster-wide start rate (--start-rate 10/s, burst 10), on
// the real control plane with kwok's fake node. Prints the figures.

import { CoreV1Api } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { eventually, kubeConfig, kubectl } from "./support/cluster.ts";
import { operatorForSuite } from "./support/operator.ts";
import { kwokPodBehaviour } from "./support/runs.ts";
import { task } from "./support/tasks.ts";

const TASKS = 200;
const RATE = 10;
const BURST = 10;

/** The client deserialises timestamps to Dates. */
interface Pod {
  metadata?: { creationTimestamp?: Date };
  status?: { conditions?: Array<{ type: string; status: string; lastTransitionTime?: Date }> };
}

function scheduledAt(pod: Pod): number | undefined {
  const c = pod.status?.conditions?.find((x) => x.type === "PodScheduled" && x.status === "True");
  return c?.lastTransitionTime ? new Date(c.lastTransitionTime).getTime() : undefined;
}

describe("cluster-wide start rate", () => {
  const suite = operatorForSuite("rate", { startRate: RATE, startBurst: BURST, workers: 8 });

  it(`spreads the starts of ${TASKS} runs due in the same minute`, async () => {
    // A minute far enough ahead for every CronJob to exist before it, even on a busy machine.
    const due = Math.ceil((Date.now() + 120_000) / 60_000) * 60_000;
    const at = new Date(due);
    const pod = kwokPodBehaviour({ duration: "1s" });
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: Array.from({ length: TASKS }, (_, i) =>
          task(suite.ns, `due-${String(i).padStart(3, "0")}`, {
            task: "http.request",
            schedule: `${at.getUTCMinutes()} ${at.getUTCHours()} * * *`,
            timeZone: "Etc/UTC",
            params: { url: "https://example.com" },
            podMetadata: pod,
          }),
        ),
      }),
    );
    await eventually(
      () => {
        const names = kubectl(["get", "cronjobs", "-n", suite.ns, "-o", "name"]).trim().split("\n");
        return names.length === TASKS ? true : undefined;
      },
      // What matters is that they all exist before the minute they are due.
      { what: `${TASKS} CronJobs before their due minute`, timeoutMs: due - Date.now() - 2_000 },
    );
    expect(Date.now()).toBeLessThan(due);

    const core = kubeConfig().makeApiClient(CoreV1Api);
    const pods = await eventually(
      async () => {
        const list: Pod[] = (await core.listNamespacedPod({ namespace: suite.ns })).items;
        return list.length === TASKS && list.every((p) => scheduledAt(p) !== undefined)
          ? list
          : undefined;
      },
      {
        what: `${TASKS} run pods started`,
        timeoutMs: due - Date.now() + 180_000,
        intervalMs: 1000,
      },
    );

    const starts = pods.map((p) => (scheduledAt(p) ?? 0) - due).sort((a, b) => a - b);
    const created = pods
      .map((p) => new Date(p.metadata?.creationTimestamp ?? 0).getTime() - due)
      .sort((a, b) => a - b);
    const perSecond = new Map<number, number>();
    for (const s of starts)
      perSecond.set(Math.floor(s / 1000), (perSecond.get(Math.floor(s / 1000)) ?? 0) + 1);
    const first = starts[0] ?? 0;
    const last = starts[starts.length - 1] ?? 0;
    const busiest = Math.max(...perSecond.values());
    console.log(
      [
        `start rate ${RATE}/s, burst ${BURST}, ${TASKS} runs due at ${at.toISOString()}:`,
        `  pods created ${(created[0] ?? 0) / 1000}..${(created[created.length - 1] ?? 0) / 1000} s after due`,
        `  pods started ${first / 1000}..${last / 1000} s after due (spread ${(last - first) / 1000} s; ideal ${(TASKS - BURST) / RATE} s)`,
        `  busiest second: ${busiest} starts; per second: ${[...perSecond.entries()].map(([s, n]) => `${s}:${n}`).join(" ")}`,
      ].join("\n"),
    );
    const delayCount = await suite.operator.metric("nightshift_run_start_delay_seconds_count");
    const delaySum = await suite.operator.metric("nightshift_run_start_delay_seconds_sum");
    const heldUnder1s = await suite.operator.metric("nightshift_run_start_delay_seconds_bucket", {
      le: "1",
    });
    console.log(
      `  gate: ${delayCount} pods released, mean hold ${(delaySum / delayCount).toFixed(2)} s (creation → release), ${delayCount - heldUnder1s} held over 1 s`,
    );
    // Timestamps have whole seconds: a calendar second holds at most the burst plus one second of rate.
    expect(busiest).toBeLessThanOrEqual(BURST + RATE);
    expect(last - first).toBeGreaterThanOrEqual(((TASKS - BURST) / RATE - 3) * 1000);
    expect(delayCount).toBe(TASKS);
    expect(await suite.operator.metric("nightshift_runs_waiting_to_start")).toBe(0);
  }, 420_000);
});
