// The runner contract's failure paths for real, on the real node: a dependency
// down (exit 75, retried), bad params the schema cannot catch (exit 64, never
// retried, SpecValid stays True), a run past its timeout (SIGTERM from the
// deadline, partial work reported), and a custom container task.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { eventually, kubectl } from "../support/cluster.ts";
import { operatorForSuite } from "../support/operator.ts";
import { createDatabase } from "../support/postgres.ts";
import {
  forPods,
  RUNNER_IMAGE,
  realNode,
  routeToRealNode,
  TESTBOX_IMAGE,
  watchTerminations,
} from "../support/real-node.ts";
import { type SmtpPeer, startSmtpPeer } from "../support/smtp.ts";
import { apply, condition, podsOfJob, task, waitForStatus } from "../support/tasks.ts";

const schema = `
  CREATE TABLE email_queue (
    id bigserial PRIMARY KEY, recipient text NOT NULL, sender text, subject text NOT NULL,
    body_text text NOT NULL, body_html text,
    status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(), claimed_at timestamptz,
    last_error text, sent_at timestamptz, created_at timestamptz NOT NULL DEFAULT now());`;

describe("failure paths on the real node", () => {
  const suite = operatorForSuite("real-failures", {
    runnerImage: RUNNER_IMAGE,
    // Custom container tasks may use only images a cluster admin allowed.
    extraArgs: [`--allowed-image-prefixes=${TESTBOX_IMAGE.split(":")[0]}`],
  });
  let smtp: SmtpPeer;
  let databaseUrl: string;

  beforeAll(async () => {
    routeToRealNode(suite.ns);
    smtp = await startSmtpPeer(realNode().hostAddress);
    databaseUrl = await createDatabase(inject("postgresUrl"), "real_failures", schema);
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "conn", namespace: suite.ns },
        stringData: { DATABASE_URL: forPods(databaseUrl), SMTP_URL: smtp.url },
      }),
    );
  });
  afterAll(async () => {
    await smtp?.close();
  });

  const runNow = { "nightshift.dev/run-now": "1" };
  // Real pods on a busy 2-core machine: generous waits, and test timeouts above them.
  const RUN_TEST_TIMEOUT = 300_000;
  const finishedRun = (name: string, timeoutMs = 240_000) =>
    waitForStatus(suite.ns, name, "a run recorded", (s) => (s.runs?.total ?? 0) >= 1, timeoutMs);

  it(
    "a dependency down exits 75 and the pod is retried",
    async () => {
      const [closed] = await freePorts(1);
      apply(
        task(
          suite.ns,
          "down",
          {
            task: "http.request",
            schedule: "0 0 1 1 *",
            retry: { limit: 1 },
            params: { url: `http://${realNode().hostAddress}:${closed}/`, timeout: "5s" },
          },
          runNow,
        ),
      );
      const bgt = await finishedRun("down");
      expect(bgt.status?.lastRun).toMatchObject({ outcome: "Failed", exitCode: 75 });
      expect(JSON.parse(bgt.status?.lastRun.message)).toMatchObject({
        outcome: "failed",
        exitCode: 75,
        error: expect.stringContaining("ECONNREFUSED"),
      });
      // backoffLimit 1: the Job ran a second pod after the first exit 75.
      const pods = podsOfJob(suite.ns, bgt.status?.lastRun.jobName);
      expect(pods.map((p: any) => p.status.containerStatuses[0].state.terminated.exitCode)).toEqual(
        [75, 75],
      );
    },
    RUN_TEST_TIMEOUT,
  );

  it(
    "bad params the schema cannot catch exit 64, are not retried, and leave SpecValid True",
    async () => {
      apply(
        task(
          suite.ns,
          "bad-query",
          {
            task: "email.daily-summary",
            schedule: "0 0 1 1 *",
            retry: { limit: 3 },
            params: { from: "digest@example.com", query: "selec recipient, title from nowhere" },
            envFrom: [{ secretRef: { name: "conn" } }],
          },
          runNow,
        ),
      );
      const bgt = await finishedRun("bad-query");
      expect(bgt.status?.lastRun).toMatchObject({
        outcome: "Failed",
        exitCode: 64,
        reason: "PodFailurePolicy",
      });
      expect(bgt.status?.lastRun.message).toContain("check the task's params");
      expect(condition(bgt, "SpecValid")?.status).toBe("True");
      expect(podsOfJob(suite.ns, bgt.status?.lastRun.jobName)).toHaveLength(1);
    },
    RUN_TEST_TIMEOUT,
  );

  it(
    "a run past its timeout gets SIGTERM from the deadline and reports the work it did",
    async () => {
      const db = new pg.Client({ connectionString: databaseUrl });
      await db.connect();
      await db.query(
        "INSERT INTO email_queue (recipient, subject, body_text) SELECT 'u' || g || '@example.com', 'slow', 'x' FROM generate_series(1, 300) g",
      );
      // A slow mail server: 300 emails take 120 s, far past the 60 s timeout,
      // which leaves time to send some even when a busy node starts the pod slowly.
      smtp.delayMs = 400;
      const terminations = await watchTerminations(suite.ns);
      apply(
        task(
          suite.ns,
          "slow-mail",
          {
            task: "email.process-queue",
            schedule: "0 0 1 1 *",
            timeout: "60s",
            params: { from: "noreply@example.com", batchSize: 300 },
            envFrom: [{ secretRef: { name: "conn" } }],
          },
          runNow,
        ),
      );
      const bgt = await finishedRun("slow-mail");
      const lastRun = bgt.status?.lastRun;
      expect(lastRun).toMatchObject({ outcome: "Failed", reason: "DeadlineExceeded" });
      // The pod the deadline stopped: the runner finished the email in hand, put
      // the rest back, and reported its counts as a retryable stop.
      const stopped = await eventually(
        () => terminations.seen.find((t) => t.job === lastRun.jobName),
        {
          timeoutMs: 60_000,
          what: `the stopped pod's termination (seen: ${JSON.stringify(terminations.seen)}; pods: ${kubectl(["get", "pods", "-n", suite.ns, "-o", "wide"])})`,
        },
      );
      terminations.stop();
      expect(stopped.exitCode).toBe(75);
      const result = JSON.parse(stopped.message ?? "{}");
      expect(result).toMatchObject({ outcome: "stopped", claimed: 300 });
      expect(result.sent).toBeGreaterThan(0);
      expect(result.sent).toBeLessThan(300);
      // What it reported is what it did: sent rows are marked, the rest are queued again.
      const { rows } = await db.query(
        "SELECT status, count(*)::int AS n FROM email_queue GROUP BY status ORDER BY status",
      );
      await db.end();
      expect(rows).toEqual([
        { status: "pending", n: 300 - result.sent },
        { status: "sent", n: result.sent },
      ]);
    },
    RUN_TEST_TIMEOUT,
  );

  it.each([
    [0, "Succeeded", ["echo", "hello from testbox"]],
    [75, "Failed", ["exit", "75", '{"error":"upstream down"}']],
  ])(
    "a custom container task follows the exit-code contract (exit %i)",
    async (code, outcome, args) => {
      const name = `custom-${code}`;
      apply(
        task(
          suite.ns,
          name,
          {
            container: { image: TESTBOX_IMAGE, args },
            schedule: "0 0 1 1 *",
          },
          runNow,
        ),
      );
      const bgt = await finishedRun(name);
      expect(bgt.status?.lastRun).toMatchObject({ outcome, exitCode: code });
      if (code !== 0) expect(bgt.status?.lastRun.message).toBe('{"error":"upstream down"}');
      expect(podsOfJob(suite.ns, bgt.status?.lastRun.jobName)[0]?.spec.nodeName).toBe(
        realNode().nodeName,
      );
    },
    RUN_TEST_TIMEOUT,
  );
});
