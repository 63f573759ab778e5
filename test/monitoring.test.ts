// Monitoring proven on the real tools: kube-state-metrics (with the shipped
// CustomResourceState config) and Prometheus (with the shipped rules) scrape the
// local control plane and a real operator, while tasks run, fail and open their
// circuit. Every assertion goes through Prometheus's HTTP API.
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DASHBOARD_FILE, Monitoring } from "./controlplane/monitoring.ts";
import { createNamespace, eventually, kubectl } from "./support/cluster.ts";
import { OperatorProcess } from "./support/operator.ts";
import { forPods, RUNNER_IMAGE, realNode, routeToRealNode } from "./support/real-node.ts";
import { startScheduledRun } from "./support/runs.ts";
import { apply, readyTask, task, waitForCondition, waitForStatus } from "./support/tasks.ts";

/**
 * Series only a kubelet's cAdvisor exposes, for running containers only: checked while a real run
 * is in flight on the real node; the kwok runs have no container to measure.
 */
const KUBELET_ONLY = /\bcontainer_(cpu_usage_seconds_total|memory_working_set_bytes)\b/;

interface DashboardTarget {
  panel: string;
  expr: string;
}

function dashboardTargets(): { targets: DashboardTarget[]; variables: string[] } {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    templating: { list: Array<{ type: string; query: string | { query: string } }> };
  };
  return {
    targets: dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
    ),
    variables: dashboard.templating.list
      .filter((v) => v.type === "query")
      .map((v) => (typeof v.query === "string" ? v.query : v.query.query)),
  };
}

describe("monitoring with kube-state-metrics and Prometheus", () => {
  let ns = "";
  /** Pods of this namespace run on the real node with the real runner image. */
  let realNs = "";
  let peer: Server | undefined;
  /** Answers the held webhook requests: the real run ends once the test has seen what it needs. */
  let releaseHeld = () => {};
  let operator: OperatorProcess;
  let monitoring: Monitoring;

  /** Waits until the PromQL expression returns exactly one sample with the expected value. */
  const expectValue = (
    expr: string,
    expected: number | ((v: number) => boolean),
    timeoutMs = 90_000,
  ) =>
    eventually(
      async () => {
        const result = await monitoring.query(expr);
        if (result.length !== 1) return undefined;
        const value = result[0]?.value ?? Number.NaN;
        const ok = typeof expected === "number" ? value === expected : expected(value);
        return ok ? value : undefined;
      },
      { what: `${expr} to be ${String(expected)}`, timeoutMs, intervalMs: 500 },
    );

  beforeAll(async () => {
    ns = await createNamespace("monitoring");
    realNs = await createNamespace("monitoring-real");
    routeToRealNode(realNs);
    operator = await OperatorProcess.start({
      namespaces: [ns, realNs],
      runnerImage: RUNNER_IMAGE,
      leaderElect: true,
      leaderElectionId: "nightshift-operator",
      leaderElectionNamespace: ns,
    });
    monitoring = await Monitoring.start({
      kubeconfigPath: inject("kubeconfigPath"),
      binDir: inject("binDir"),
      operators: [`127.0.0.1:${operator.port}`],
      kubeletNodes: [realNode().nodeName],
      interval: "1s",
      alertFor: "0s",
    });

    // Tasks scheduled once a year get their runs from the test; "minutely" from the real CronJob controller.
    await Promise.all([
      readyTask(ns, "steady", { resources: { requests: { cpu: "100m", memory: "64Mi" } } }),
      readyTask(ns, "flaky"),
      readyTask(ns, "broken", { circuitBreaker: { failureThreshold: 2, cooldown: "1h" } }),
      readyTask(ns, "retrying", {
        retry: { backoff: { initialDelay: "1s", maxDelay: "1s", maxRetries: 1 } },
      }),
      readyTask(ns, "minutely", { schedule: "* * * * *" }),
      readyTask(ns, "slow", { timeout: "20s" }),
    ]);
    // A webhook on the host that answers after ?delay ms, or (?hold) when the test releases it,
    // so a real run stays in flight as long as the test needs.
    const held: Array<() => void> = [];
    releaseHeld = () => {
      for (const answer of held.splice(0)) answer();
    };
    peer = createServer((req, res) => {
      const query = new URL(req.url ?? "/", "http://x").searchParams;
      if (query.has("hold")) {
        held.push(() => res.end("ok"));
        return;
      }
      setTimeout(() => res.end("ok"), Number(query.get("delay") ?? "0"));
    });
    await new Promise<void>((resolve) => peer?.listen(0, "0.0.0.0", resolve));
    const peerUrl = forPods(`http://127.0.0.1:${(peer.address() as AddressInfo).port}`);
    await readyTask(realNs, "real", {
      params: { url: `${peerUrl}/?hold`, timeout: "10m" },
      resources: { requests: { cpu: "50m", memory: "32Mi" } },
    });
    apply(task(ns, "invalid", { task: "email.carrier-pigeon", schedule: "@daily" }));
    await waitForCondition(ns, "invalid", "SpecValid", "False", "UnknownTask");

    const runs = async (name: string, exitCodes: number[], duration?: string) => {
      for (const [i, exitCode] of exitCodes.entries()) {
        startScheduledRun(ns, name, `${name}-${i + 1}`, { exitCode, duration });
        await waitForStatus(
          ns,
          name,
          `run ${i + 1} recorded`,
          (s) => s.runs?.total >= i + 1,
          60_000,
        );
      }
    };
    await Promise.all([
      runs("steady", [0, 0], "2s"),
      runs("flaky", [75, 75, 75]),
      runs("broken", [65, 65]),
      runs("retrying", [75]),
    ]);
    await waitForStatus(ns, "broken", "circuit open", (s) => s.circuit?.state === "Open");
    await waitForStatus(ns, "retrying", "retry run recorded", (s) => s.runs?.total === 2, 60_000);
    await waitForStatus(
      ns,
      "minutely",
      "a scheduled run recorded",
      (s) => s.runs?.total >= 1,
      150_000,
    );
  });

  afterAll(async () => {
    await monitoring?.stop();
    await operator?.stop();
    releaseHeld();
    peer?.close();
  });

  it("scrapes kube-state-metrics and the operator, and loads every rule", async () => {
    await eventually(
      async () => {
        const targets = await monitoring.targets();
        const healthy = new Set(targets.filter((t) => t.health === "up").map((t) => t.job));
        return healthy.has("kube-state-metrics") &&
          healthy.has("nightshift-operator") &&
          healthy.has("kubelet-cadvisor")
          ? true
          : undefined;
      },
      { what: "kube-state-metrics, operator and kubelet targets up", timeoutMs: 60_000 },
    );
    // The real node's kubelet answers through the API server's node proxy with cAdvisor series.
    await expectValue(
      `count(container_memory_working_set_bytes{job="kubelet-cadvisor",node="${realNode().nodeName}"})`,
      (v) => v > 0,
    );
    const groups = await eventually(
      async () => {
        const g = await monitoring.rules();
        return g.every((group) => group.rules.every((r) => r.health === "ok")) ? g : undefined;
      },
      { what: "every rule evaluated without error", timeoutMs: 60_000 },
    );
    expect(groups.map((g) => g.name).sort()).toEqual([
      "nightshift.backgroundtasks",
      "nightshift.operator",
      "nightshift.recording",
    ]);
    expect(groups.flatMap((g) => g.rules).length).toBe(16);
    expect(monitoring.logs("kube-state-metrics")).not.toMatch(
      /failed to compile|unknown metric type/i,
    );
  });

  it("exposes each task's status through kube-state-metrics", async () => {
    const t = (name: string) => `namespace="${ns}",backgroundtask="${name}"`;
    await expectValue(
      `nightshift_backgroundtask_info{${t("steady")},task_type="http.request",schedule="0 0 1 1 *",time_zone="UTC",priority="normal",cronjob="steady"}`,
      1,
    );
    await expectValue(`nightshift_backgroundtask_runs_total{${t("steady")}}`, 2);
    await expectValue(`nightshift_backgroundtask_runs_succeeded_total{${t("steady")}}`, 2);
    await expectValue(`nightshift_backgroundtask_runs_failed_total{${t("steady")}}`, 0);
    await expectValue(
      `nightshift_backgroundtask_last_run_duration_seconds{${t("steady")},outcome="Succeeded"}`,
      (v) => v >= 2,
    );
    await expectValue(
      `nightshift_backgroundtask_last_run_exit_code{${t("steady")},outcome="Succeeded"}`,
      0,
    );
    await expectValue(`nightshift_backgroundtask_phase{${t("steady")},phase="Ready"}`, 1);
    await expectValue(`nightshift_backgroundtask_suspended{${t("steady")}}`, 0);
    await expectValue(`nightshift_backgroundtask_status_condition{${t("steady")},type="Ready"}`, 1);
    await expectValue(
      `nightshift_backgroundtask_status_condition{${t("steady")},type="Suspended"}`,
      0,
    );
    await expectValue(
      `nightshift_backgroundtask_metadata_generation{${t("steady")}} - nightshift_backgroundtask_status_observed_generation{${t("steady")}}`,
      0,
    );
    const now = Date.now() / 1000;
    await expectValue(
      `nightshift_backgroundtask_last_success_timestamp_seconds{${t("steady")}}`,
      (v) => Math.abs(now - v) < 600,
    );
    await expectValue(
      `nightshift_backgroundtask_last_schedule_timestamp_seconds{${t("minutely")}}`,
      (v) => Math.abs(now - v) < 600,
    );
    await expectValue(
      `nightshift_backgroundtask_created_timestamp_seconds{${t("steady")}}`,
      (v) => Math.abs(now - v) < 900,
    );
    await expectValue(
      `nightshift_backgroundtask_next_schedule_timestamp_seconds{${t("minutely")}} - time()`,
      (v) => v > -5 && v <= 65,
    );

    await expectValue(`nightshift_backgroundtask_runs_failed_total{${t("flaky")}}`, 3);
    await expectValue(`nightshift_backgroundtask_consecutive_failures{${t("flaky")}}`, 3);
    await expectValue(
      `nightshift_backgroundtask_last_run_exit_code{${t("flaky")},outcome="Failed",reason="BackoffLimitExceeded"}`,
      75,
    );
    await expectValue(
      `nightshift_backgroundtask_last_failure_timestamp_seconds{${t("flaky")}}`,
      (v) => Math.abs(now - v) < 600,
    );
    await expectValue(`nightshift_backgroundtask_phase{${t("flaky")},phase="Failing"}`, 1);

    await expectValue(`nightshift_backgroundtask_circuit_state{${t("broken")},state="Open"}`, 1);
    await expectValue(`nightshift_backgroundtask_circuit_state{${t("broken")},state="Closed"}`, 0);
    await expectValue(
      `nightshift_backgroundtask_status_condition{${t("broken")},type="CircuitOpen"}`,
      1,
    );
    await expectValue(`nightshift_backgroundtask_phase{${t("broken")},phase="CircuitOpen"}`, 1);
    await expectValue(
      `nightshift_backgroundtask_last_run_exit_code{${t("broken")},reason="PodFailurePolicy"}`,
      65,
    );

    await expectValue(`nightshift_backgroundtask_runs_succeeded_total{${t("retrying")}}`, 1);
    await expectValue(`nightshift_backgroundtask_consecutive_failures{${t("retrying")}}`, 0);

    await expectValue(
      `nightshift_backgroundtask_status_condition{${t("invalid")},type="SpecValid",reason="UnknownTask"}`,
      0,
    );
    await expectValue(`nightshift_backgroundtask_phase{${t("invalid")},phase="Invalid"}`, 1);
  });

  it("exposes the operator's run metrics", async () => {
    const t = (name: string) => `namespace="${ns}",backgroundtask="${name}"`;
    await expectValue(
      `nightshift_runs_total{${t("steady")},outcome="Succeeded",reason="Completed"}`,
      2,
    );
    await expectValue(
      `nightshift_runs_total{${t("flaky")},outcome="Failed",reason="BackoffLimitExceeded"}`,
      3,
    );
    await expectValue(
      `nightshift_runs_total{${t("broken")},outcome="Failed",reason="PodFailurePolicy"}`,
      2,
    );
    await expectValue(`nightshift_run_duration_seconds_count{${t("steady")}}`, 2);
    await expectValue(`nightshift_run_duration_seconds_bucket{${t("steady")},le="1"}`, 0);
    await expectValue(`nightshift_retries_started_total{${t("retrying")}}`, 1);
    await expectValue(`nightshift_circuit_transitions_total{${t("broken")},to="Open"}`, 1);
    await expectValue(`nightshift_run_schedule_lag_seconds_count{${t("minutely")}}`, (v) => v >= 1);
    await expectValue(`nightshift_run_queue_wait_seconds_count{${t("steady")}}`, 2);
    await expectValue(`max(leader_election_master_status{name="nightshift-operator"})`, 1);
  });

  it("joins run pods and CronJobs to their task", async () => {
    await expectValue(
      `count(nightshift:pod_backgroundtask:info{namespace="${ns}",backgroundtask="steady"})`,
      2,
    );
    await expectValue(
      `sum(kube_pod_container_resource_requests{namespace="${ns}",resource="cpu"} * on (namespace, pod) group_left (backgroundtask) nightshift:pod_backgroundtask:info{backgroundtask="steady"})`,
      0.2,
    );
    await expectValue(
      `nightshift:backgroundtask_schedule_interval_seconds{namespace="${ns}",backgroundtask="minutely"}`,
      60,
    );
  });

  it("fires the alerts of failing, circuit-open and invalid tasks, and none for healthy ones", async () => {
    const firing = await eventually(
      async () => {
        const alerts = (await monitoring.alerts()).filter(
          (a) => a.state === "firing" && a.labels.namespace === ns,
        );
        const names = new Set(
          alerts.map((a) => `${a.labels.alertname}/${a.labels.backgroundtask}`),
        );
        return names.has("BackgroundTaskFailing/flaky") &&
          names.has("BackgroundTaskCircuitOpen/broken") &&
          names.has("BackgroundTaskSpecInvalid/invalid")
          ? alerts
          : undefined;
      },
      { what: "alerts firing", timeoutMs: 90_000 },
    );
    const failing = firing.find((a) => a.labels.alertname === "BackgroundTaskFailing");
    expect(failing?.labels.severity).toBe("warning");
    expect(failing?.annotations.summary).toBe(`BackgroundTask ${ns}/flaky keeps failing`);
    expect(failing?.annotations.description).toBe(
      `The last 3 runs of BackgroundTask ${ns}/flaky failed.`,
    );
    const healthy = firing.filter((a) =>
      ["steady", "retrying", "minutely"].includes(a.labels.backgroundtask ?? ""),
    );
    expect(healthy).toEqual([]);
  });

  it("shows a running run, and warns when it nears its timeout", async () => {
    startScheduledRun(ns, "slow", "slow-1", { duration: "60s" });
    const started = await expectValue(
      `nightshift_backgroundtask_active_runs{namespace="${ns}",backgroundtask="slow",job_name="slow-1"}`,
      (v) => Math.abs(Date.now() / 1000 - v) < 120,
    );
    expect(started).toBeGreaterThan(0);
    const alert = await eventually(
      async () =>
        (await monitoring.alerts()).find(
          (a) =>
            a.state === "firing" &&
            a.labels.alertname === "BackgroundTaskRunTooLong" &&
            a.labels.namespace === ns,
        ),
      { what: "BackgroundTaskRunTooLong firing", timeoutMs: 90_000 },
    );
    expect(alert.labels).toMatchObject({
      backgroundtask: "slow",
      job_name: "slow-1",
      severity: "warning",
    });
    await waitForStatus(
      ns,
      "slow",
      "run stopped at its deadline",
      (s) => s.lastRun?.reason === "DeadlineExceeded",
      90_000,
    );
  });

  it("measures a real run's CPU and memory through the kubelet, as the dashboard shows them", async () => {
    startScheduledRun(realNs, "real", "real-1");
    const { targets } = dashboardTargets();
    const kubeletOnly = targets.filter((t) => KUBELET_ONLY.test(t.expr));
    expect(kubeletOnly.map((t) => t.panel).sort()).toEqual(["CPU of runs", "Memory of runs"]);
    for (const target of kubeletOnly) {
      const expr = target.expr
        .replaceAll("$namespace", realNs)
        .replaceAll("$task", "real")
        .replaceAll("$__rate_interval", "1m");
      const [sample] = await eventually(
        async () => {
          const result = await monitoring.query(expr);
          return result.length === 1 && result[0]?.metric.backgroundtask === "real"
            ? result
            : undefined;
        },
        {
          what: `${target.panel} while the run is in flight: ${expr}`,
          timeoutMs: 180_000,
          intervalMs: 1000,
        },
      ).catch(async (error) => {
        const pods = kubectl(["get", "pods", "-n", realNs, "-o", "wide"]);
        const raw = await monitoring.query(
          `container_memory_working_set_bytes{namespace="${realNs}"}`,
        );
        const labels = await monitoring.query(`kube_pod_labels{namespace="${realNs}"}`);
        throw new Error(
          `${String(error)}\n${pods}\ncadvisor: ${JSON.stringify(raw)}\nlabels: ${JSON.stringify(labels)}`,
        );
      });
      expect(sample?.value, target.panel).toBeGreaterThan(0);
    }
    releaseHeld();
    await waitForStatus(
      realNs,
      "real",
      "the real run recorded",
      (s) => s.runs?.succeeded === 1,
      120_000,
    );
  }, 300_000);

  it("answers every query of the dashboard with data", async () => {
    const { targets, variables } = dashboardTargets();
    const substitute = (expr: string) =>
      expr
        .replaceAll("$namespace", ns)
        .replaceAll("$task", ".+")
        .replaceAll("$__rate_interval", "5m")
        .replaceAll("$__range", "1h");
    const kubeletOnly = targets.filter((t) => KUBELET_ONLY.test(t.expr));
    const empty = await eventually(
      async () => {
        const missing: string[] = [];
        for (const target of targets) {
          if (KUBELET_ONLY.test(target.expr)) continue;
          const result = await monitoring.query(substitute(target.expr));
          if (result.length === 0) missing.push(`${target.panel}: ${target.expr}`);
        }
        return missing.length === 0 ? missing : undefined;
      },
      { what: "every dashboard query to return data", timeoutMs: 90_000, intervalMs: 2000 },
    ).catch(async (error) => {
      throw new Error(
        `${String(error)}\n${await describeEmpty(
          targets.filter((t) => !KUBELET_ONLY.test(t.expr)),
          substitute,
        )}`,
      );
    });
    expect(empty).toEqual([]);
    // The two cAdvisor series are proven in the real-run test above.
    expect(kubeletOnly.map((t) => t.panel).sort()).toEqual(["CPU of runs", "Memory of runs"]);

    for (const variable of variables) {
      const match = /^label_values\((.*), (\w+)\)$/.exec(variable);
      expect(match, variable).not.toBeNull();
      const result = await monitoring.query(
        `group by (${match?.[2]}) (${substitute(match?.[1] ?? "")})`,
      );
      expect(result.length, variable).toBeGreaterThan(0);
    }
  });

  async function describeEmpty(
    targets: DashboardTarget[],
    substitute: (e: string) => string,
  ): Promise<string> {
    const lines: string[] = [];
    for (const target of targets)
      if ((await monitoring.query(substitute(target.expr))).length === 0)
        lines.push(`no data: ${target.panel}: ${substitute(target.expr)}`);
    return lines.join("\n");
  }
});
