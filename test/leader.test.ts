// A leader that cannot be sure of its lease makes no writes, and a leader
// told to stop hands its lease over at once: proven on the real control plane
// with the apiserver's own audit log and the operator's logs.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { createNamespace, eventually, kubectl } from "./support/cluster.ts";
import {
  clientCertificate,
  grantClusterAdmin,
  scratchDir,
  writeKubeconfig,
} from "./support/identities.ts";
import { OperatorProcess } from "./support/operator.ts";
import { getJson, readyTask, task } from "./support/tasks.ts";

const AUDITED = "nightshift:audited";

interface AuditEvent {
  verb: string;
  user: { username: string };
  requestReceivedTimestamp: string;
  objectRef?: { resource?: string; name?: string };
  responseStatus?: { code?: number };
}

/** Writes the apiserver recorded for one user (see test/controlplane/audit-policy.yaml). */
function auditedWrites(username: string): AuditEvent[] {
  const log = join(dirname(inject("kubeconfigPath")), "logs", "audit.log");
  return readFileSync(log, "utf8")
    .split("\n")
    .filter((line) => line.includes(`"username":"${username}"`))
    .map((line) => JSON.parse(line) as AuditEvent)
    .filter((event) => event.user.username === username);
}

/** A kubeconfig whose writes the apiserver audits, as user `name`. */
function auditedIdentity(dir: string, name: string): string {
  const { cert, key } = clientCertificate(dir, name, [AUDITED]);
  return writeKubeconfig(dir, { "client-certificate": cert, "client-key": key });
}

async function leads(operator: OperatorProcess, id: string): Promise<true | undefined> {
  return (await operator.metric("leader_election_master_status", { name: id })) === 1
    ? true
    : undefined;
}

describe("leader fencing and shutdown", () => {
  it("a leader frozen past its lease makes no write after it resumes; the standby has taken over", async () => {
    const ns = await createNamespace("fence");
    const id = `nightshift-${ns}`;
    const dir = scratchDir("fence");
    await grantClusterAdmin({ kind: "Group", name: AUDITED });
    const userA = `${ns}-a`;
    const replica = (identity: string, kubeconfig: string) =>
      OperatorProcess.start({
        namespaces: [ns],
        leaderElect: true,
        leaderElectionId: id,
        leaderElectionNamespace: ns,
        identity,
        kubeconfig,
      });
    const a = await replica("replica-a", auditedIdentity(dir, userA));
    await eventually(() => leads(a, id), { what: "a to lead" });
    const b = await replica("replica-b", auditedIdentity(dir, `${ns}-b`));
    try {
      await readyTask(ns, "led-by-a");
      expect(auditedWrites(userA).some((e) => e.objectRef?.resource === "cronjobs")).toBe(true);

      a.child.kill("SIGSTOP");
      await eventually(() => leads(b, id), { what: "b to take over the lease", timeoutMs: 60_000 });
      // Work a would pick up the moment it resumes: its watch delivers this task then.
      await readyTask(ns, "led-by-b");
      kubectl(["annotate", "bgt", "led-by-a", "-n", ns, "touched=1"]);

      const resumedAt = Date.now();
      a.child.kill("SIGCONT");
      await eventually(() => (a.exited ? true : undefined), {
        what: "a to notice it lost the lease and exit",
        timeoutMs: 60_000,
      });
      expect(a.child.exitCode).toBe(1);
      expect(a.output).toContain("lost leadership");
      const late = auditedWrites(userA).filter(
        (e) => Date.parse(e.requestReceivedTimestamp) >= resumedAt,
      );
      expect(late).toEqual([]);
      expect(getJson(["lease", id, "-n", ns])?.spec.holderIdentity).toBe("replica-b");
    } finally {
      await a.stop("SIGKILL");
      await b.stop();
    }
  });

  it("on SIGTERM takes no more keys, finishes the reconciles in flight and releases the lease", async () => {
    const ns = await createNamespace("drain");
    const id = `nightshift-${ns}`;
    const count = 300;
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "List",
        items: Array.from({ length: count }, (_, i) =>
          task(ns, `t${i}`, {
            task: "http.request",
            schedule: "0 0 1 1 *",
            params: { url: "https://example.com" },
          }),
        ),
      }),
    );
    const operator = await OperatorProcess.start({
      namespaces: [ns],
      leaderElect: true,
      leaderElectionId: id,
      leaderElectionNamespace: ns,
      identity: "draining",
      workers: 1,
    });
    await eventually(
      async () =>
        (await operator.metric("controller_runtime_reconcile_total", {
          result: "requeue_after",
        })) >= 3
          ? true
          : undefined,
      { what: "the first reconciles" },
    );
    expect(await operator.stop("SIGTERM")).toBe(0);
    const stopping = operator.output
      .split("\n")
      .filter((line) => line.includes("stopping: no more keys"))
      .map((line) => JSON.parse(line) as { queued: number; reconciled: number });
    expect(stopping).toHaveLength(1);
    const { queued, reconciled } = stopping[0] as { queued: number; reconciled: number };
    expect(queued).toBeGreaterThan(0);
    // Every status written is from a reconcile finished before SIGTERM or the one in flight.
    const items = JSON.parse(kubectl(["get", "bgt", "-n", ns, "-o", "json"])).items as Array<{
      status?: { observedGeneration?: number };
    }>;
    const withStatus = items.filter((t) => t.status?.observedGeneration !== undefined).length;
    expect(withStatus).toBeLessThanOrEqual(reconciled + 1);
    expect(withStatus).toBeLessThan(count);
    expect(getJson(["lease", id, "-n", ns])?.spec.holderIdentity ?? "").toBe("");
    expect(operator.output).toContain("released leadership");
  });
});
