// The operator core end to end: a real operator process against the real
// control plane, observed through kubectl and the API like a user would.
import { describe, expect, it } from "vitest";
import { createNamespace, eventually, kubectl, kubectlResult, sleep } from "./support/cluster.ts";
import { OperatorProcess, operatorForSuite } from "./support/operator.ts";
import { startScheduledRun } from "./support/runs.ts";
import {
  apply,
  condition,
  getJson,
  patchSpec,
  podsOfJob,
  readyTask,
  task,
  waitForCondition,
  waitForStatus,
  warningEvents,
} from "./support/tasks.ts";

describe("BackgroundTask operator", () => {
  const suite = operatorForSuite("op", {
    priorityClasses: "high=nightshift-high,low=nightshift-low",
  });

  it("creates the CronJob a task describes, and reports Ready", async () => {
    kubectl([
      "create",
      "secret",
      "generic",
      "db",
      "-n",
      suite.ns,
      "--from-literal=DATABASE_URL=postgres://x",
    ]);
    apply(
      task(suite.ns, "sessions", {
        task: "maintenance.cleanup-sessions",
        schedule: "H 4 * * *",
        timeZone: "Europe/Berlin",
        concurrencyPolicy: "Replace",
        startingDeadlineSeconds: 300,
        successfulRunsHistoryLimit: 5,
        failedRunsHistoryLimit: 2,
        timeout: "15m",
        retry: { limit: 2 },
        priority: "high",
        queueName: "batch",
        resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "256Mi" } },
        params: { batchSize: 500 },
        env: [
          {
            name: "DATABASE_URL",
            valueFrom: { secretKeyRef: { name: "db", key: "DATABASE_URL" } },
          },
        ],
        podMetadata: {
          labels: { team: "payments" },
          annotations: { "vault.hashicorp.com/agent-inject": "true" },
        },
      }),
    );
    kubectl(["wait", "--for=condition=Ready", `bgt/sessions`, "-n", suite.ns, "--timeout=30s"]);
    const bgt = getJson(["bgt", "sessions", "-n", suite.ns]);
    const cj = getJson(["cronjob", "sessions", "-n", suite.ns]);
    expect(cj).toBeDefined();
    if (!cj || !bgt) return;

    const owner = cj.metadata.ownerReferences[0];
    expect(owner).toMatchObject({
      kind: "BackgroundTask",
      name: "sessions",
      uid: bgt.metadata.uid,
      controller: true,
    });
    expect(cj.metadata.labels).toMatchObject({
      "app.kubernetes.io/managed-by": "nightshift-operator",
      "nightshift.dev/task": "sessions",
    });
    expect(cj.spec.schedule).toMatch(/^\d{1,2} 4 \* \* \*$/);
    expect(cj.spec).toMatchObject({
      timeZone: "Europe/Berlin",
      suspend: false,
      concurrencyPolicy: "Replace",
      startingDeadlineSeconds: 300,
      // The operator prunes recorded runs itself; the CronJob controller must never prune.
      successfulJobsHistoryLimit: 1000000,
      failedJobsHistoryLimit: 1000000,
    });
    const job = cj.spec.jobTemplate;
    expect(job.metadata.labels).toMatchObject({
      "kueue.x-k8s.io/queue-name": "batch",
      "nightshift.dev/task-type": "maintenance.cleanup-sessions",
    });
    expect(job.spec.activeDeadlineSeconds).toBe(900);
    expect(job.spec.backoffLimit).toBe(2);
    expect(job.spec.podFailurePolicy.rules[0]).toMatchObject({
      action: "FailJob",
      onExitCodes: { operator: "In", values: [64, 65, 78] },
    });
    const pod = job.spec.template;
    expect(pod.metadata.labels).toMatchObject({
      team: "payments",
      "nightshift.dev/task": "sessions",
    });
    expect(pod.metadata.annotations).toMatchObject({ "vault.hashicorp.com/agent-inject": "true" });
    expect(pod.spec.priorityClassName).toBe("nightshift-high");
    // No service account named: the namespace's default account's token is not mounted.
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.serviceAccountName).toBeUndefined();
    expect(pod.spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const container = pod.spec.containers[0];
    expect(container.image).toBe("registry.example/nightshift/task-runner:test");
    expect(container.args).toEqual(["run", "maintenance.cleanup-sessions"]);
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(container.resources).toEqual({
      requests: { cpu: "100m", memory: "128Mi" },
      limits: { memory: "256Mi" },
    });
    const env = Object.fromEntries(
      (container.env as Array<{ name: string; value?: string; valueFrom?: unknown }>).map((e) => [
        e.name,
        e.value ?? e.valueFrom,
      ]),
    );
    expect(JSON.parse(env.NIGHTSHIFT_PARAMS as string)).toEqual({ batchSize: 500 });
    expect(env.DATABASE_URL).toEqual({ secretKeyRef: { name: "db", key: "DATABASE_URL" } });

    expect(bgt.status).toMatchObject({
      phase: "Ready",
      task: "maintenance.cleanup-sessions",
      schedule: cj.spec.schedule,
      timeZone: "Europe/Berlin",
      cronJobName: "sessions",
    });
    expect(Date.parse(bgt.status?.nextScheduleTime)).toBeGreaterThan(Date.now());
  });

  it("expands H the same way every time and differently for different tasks", async () => {
    const names = ["h-a", "h-b", "h-c", "h-d", "h-e", "h-f"];
    for (const name of names)
      apply(
        task(suite.ns, name, {
          task: "http.request",
          schedule: "H H * * *",
          params: { url: "http://example.invalid/" },
        }),
      );
    const schedules = await eventually(() => {
      const s = names.map(
        (name) => getJson(["cronjob", name, "-n", suite.ns])?.spec.schedule as string | undefined,
      );
      return s.every(Boolean) ? s : undefined;
    });
    expect(new Set(schedules).size).toBeGreaterThan(1);
    kubectl(["delete", "cronjob", "h-a", "-n", suite.ns]);
    const again = await eventually(
      () => getJson(["cronjob", "h-a", "-n", suite.ns])?.spec.schedule as string | undefined,
    );
    expect(again).toBe(schedules[0]);
  });

  it("updates the CronJob when the task changes, and reflects suspend in status", async () => {
    apply(
      task(suite.ns, "digest", {
        task: "email.daily-summary",
        params: { query: "select 1", from: "ops@example.com" },
      }),
    );
    await waitForCondition(suite.ns, "digest", "Ready", "True");
    expect(getJson(["cronjob", "digest", "-n", suite.ns])?.spec.schedule).toBe("0 8 * * *");
    patchSpec(suite.ns, "digest", { schedule: "30 7 * * 1-5", suspend: true });
    const bgt = await waitForCondition(suite.ns, "digest", "Suspended", "True");
    const cj = getJson(["cronjob", "digest", "-n", suite.ns]);
    expect(cj?.spec).toMatchObject({ schedule: "30 7 * * 1-5", suspend: true });
    expect(bgt.status?.phase).toBe("Suspended");
    expect(bgt.status?.nextScheduleTime).toBeUndefined();
  });

  it("repairs drift: an edited CronJob is restored and a deleted one comes back", async () => {
    apply(
      task(suite.ns, "drift", {
        task: "files.cleanup-temp",
        schedule: "0 2 * * *",
        params: { paths: ["/data/tmp"], olderThan: "24h" },
      }),
    );
    await waitForCondition(suite.ns, "drift", "Ready", "True");
    kubectl([
      "patch",
      "cronjob",
      "drift",
      "-n",
      suite.ns,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { schedule: "* * * * *", suspend: true } }),
    ]);
    await eventually(
      () => {
        const cj = getJson(["cronjob", "drift", "-n", suite.ns]);
        return cj?.spec.schedule === "0 2 * * *" && cj.spec.suspend === false ? true : undefined;
      },
      { what: "edited CronJob restored" },
    );
    const uid = getJson(["cronjob", "drift", "-n", suite.ns])?.metadata.uid;
    kubectl(["delete", "cronjob", "drift", "-n", suite.ns, "--wait=true"]);
    const recreated = await eventually(
      () => {
        const cj = getJson(["cronjob", "drift", "-n", suite.ns]);
        return cj && cj.metadata.uid !== uid ? cj : undefined;
      },
      { what: "deleted CronJob recreated" },
    );
    expect(recreated.spec.schedule).toBe("0 2 * * *");
  });

  it("removes the CronJob when the task is deleted", async () => {
    await readyTask(suite.ns, "gone", { schedule: "@hourly" });
    kubectl(["delete", "bgt", "gone", "-n", suite.ns]);
    // The garbage collector learns about a new CRD on its discovery resync (every 30 s), hence the wait.
    await eventually(() => (getJson(["cronjob", "gone", "-n", suite.ns]) ? undefined : true), {
      what: "CronJob garbage collected",
      timeoutMs: 90_000,
    });
  });

  it.each([
    [
      { task: "files.cleanup-temp", container: { image: "x" }, schedule: "@daily" },
      "exactly one of spec.task or spec.container must be set",
    ],
    [
      { container: { image: "x" }, params: { a: 1 }, schedule: "@daily" },
      "spec.params is only allowed with spec.task",
    ],
    [{ container: { image: "x" } }, "spec.schedule is required for a container task"],
    [
      { task: "http.request", concurrencyPolicy: "Sometimes" },
      'spec.concurrencyPolicy: Unsupported value: "Sometimes"',
    ],
    [{ task: "http.request", timeout: "soon" }, "spec.timeout: Invalid value"],
    [{ task: "http.request", retry: { limit: 50 } }, "spec.retry.limit: Invalid value: 50"],
    [
      { task: "http.request", retry: { backoff: { initialDelay: "1h", maxDelay: "1m" } } },
      "spec.retry.backoff.maxDelay: Invalid value",
    ],
    [{ task: "http.request", priority: "urgent" }, 'spec.priority: Unsupported value: "urgent"'],
    [{ task: "http.request", bogus: true }, 'unknown field "spec.bogus"'],
  ])("rejects at admission with the field named: %j", (spec, message) => {
    const result = kubectlResult(
      ["apply", "-f", "-"],
      JSON.stringify(task(suite.ns, "rejected", spec)),
    );
    expect(result.ok).toBe(false);
    expect(result.output).toContain(message);
  });

  it.each([
    [
      "bad-cron",
      {
        task: "files.cleanup-temp",
        schedule: "61 * * * *",
        params: { paths: ["/t"], olderThan: "1h" },
      },
      "InvalidSchedule",
      "spec.schedule",
    ],
    [
      "bad-hash",
      {
        task: "files.cleanup-temp",
        schedule: "H(50-90) * * * *",
        params: { paths: ["/t"], olderThan: "1h" },
      },
      "InvalidSchedule",
      "spec.schedule",
    ],
    [
      "bad-tz",
      {
        task: "files.cleanup-temp",
        timeZone: "Mars/Olympus",
        params: { paths: ["/t"], olderThan: "1h" },
      },
      "InvalidTimeZone",
      "spec.timeZone",
    ],
    ["bad-type", { task: "email.carrier-pigeon", schedule: "@daily" }, "UnknownTask", "spec.task"],
    [
      "bad-params",
      { task: "files.cleanup-temp", params: { paths: ["relative/dir"], olderThan: "1h" } },
      "InvalidParams",
      "spec.params.paths[0]",
    ],
    [
      "missing-param",
      { task: "files.backup", params: { destination: "/backups" } },
      "InvalidParams",
      "spec.params.directories",
    ],
    [
      "no-schedule",
      { task: "http.request", params: { url: "https://example.com" } },
      "MissingSchedule",
      "spec.schedule",
    ],
  ])(
    "marks %s SpecValid=False with a reason, the field and a Warning event",
    async (name, spec, reason, field) => {
      apply(task(suite.ns, name, spec));
      const bgt = await waitForCondition(suite.ns, name, "SpecValid", "False", reason);
      expect(condition(bgt, "SpecValid")?.message).toContain(field);
      expect(condition(bgt, "Ready")).toMatchObject({ status: "False", reason });
      expect(condition(bgt, "Stalled")?.status).toBe("True");
      expect(bgt.status?.phase).toBe("Invalid");
      expect(getJson(["cronjob", name, "-n", suite.ns])).toBeUndefined();
      const events = await eventually(
        () => {
          const out = kubectl([
            "get",
            "events",
            "-n",
            suite.ns,
            "--field-selector",
            `involvedObject.name=${name},type=Warning`,
            "-o",
            "json",
          ]);
          const items = JSON.parse(out).items as Array<{
            reason: string;
            message?: string;
            note?: string;
          }>;
          return items.length ? items : undefined;
        },
        { what: `Warning event for ${name}` },
      );
      expect(events[0]?.reason).toBe(reason);
    },
  );

  it("reports a missing Secret from the run pod's CreateContainerConfigError, without reading Secrets", async () => {
    // The operator has no access to Secrets, so the task is valid until a run needs it.
    await readyTask(suite.ns, "needs-secret", {
      env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "late", key: "token" } } }],
    });
    const job = startScheduledRun(suite.ns, "needs-secret", "needs-secret-run", {
      configError: 'secret "late" not found',
    });
    const bgt = await waitForCondition(
      suite.ns,
      "needs-secret",
      "SpecValid",
      "False",
      "MissingSecret",
    );
    expect(condition(bgt, "SpecValid")?.message).toContain(
      'spec.env[0].valueFrom.secretKeyRef.name: Secret "late" does not exist',
    );
    await eventually(
      () => (warningEvents(suite.ns, "needs-secret", "MissingSecret").length ? true : undefined),
      { what: "MissingSecret Warning event" },
    );
    // Once the Secret exists the kubelet starts the container (kwok does it when the annotation goes).
    kubectl(["create", "secret", "generic", "late", "-n", suite.ns, "--from-literal=token=t"]);
    const [pod] = podsOfJob(suite.ns, job);
    kubectl([
      "annotate",
      "pod",
      pod?.metadata.name,
      "-n",
      suite.ns,
      "nightshift.dev/fake-config-error-",
    ]);
    await waitForCondition(suite.ns, "needs-secret", "Ready", "True");
    await waitForStatus(
      suite.ns,
      "needs-secret",
      "the run recorded",
      (s) => s.runs?.succeeded === 1,
    );
  });

  it("marks a custom task whose image is not allowed SpecValid=False naming the image", async () => {
    apply(
      task(suite.ns, "foreign-image", {
        container: { image: "docker.io/library/busybox:1.36", command: ["true"] },
        schedule: "@daily",
      }),
    );
    const bgt = await waitForCondition(
      suite.ns,
      "foreign-image",
      "SpecValid",
      "False",
      "ImageNotAllowed",
    );
    expect(condition(bgt, "SpecValid")?.message).toContain(
      'spec.container.image: image "docker.io/library/busybox:1.36" is not allowed',
    );
    expect(getJson(["cronjob", "foreign-image", "-n", suite.ns])).toBeUndefined();
  });

  it("shows task, schedule, status, last success, failures, next run and age in kubectl get bgt", async () => {
    await waitForCondition(suite.ns, "sessions", "Ready", "True");
    const table = kubectl(["get", "bgt", "sessions", "-n", suite.ns]);
    const [header, row] = table.trim().split("\n");
    expect(header?.split(/\s{2,}/)).toEqual([
      "NAME",
      "TASK",
      "SCHEDULE",
      "STATUS",
      "LAST SUCCESS",
      "FAILURES",
      "NEXT RUN",
      "AGE",
    ]);
    expect(row).toContain("maintenance.cleanup-sessions");
    expect(row).toContain("Ready");
    const wide = kubectl(["get", "bgtask", "sessions", "-n", suite.ns, "-o", "wide"]);
    expect(wide).toContain("Europe/Berlin");
    expect(kubectl(["get", "nightshift", "-n", suite.ns])).toContain("sessions");
  });

  it("keeps lastTransitionTime when a condition does not flip", async () => {
    const before = condition(
      await waitForCondition(suite.ns, "sessions", "Ready", "True"),
      "Ready",
    );
    patchSpec(suite.ns, "sessions", { startingDeadlineSeconds: 120 });
    await eventually(() =>
      getJson(["cronjob", "sessions", "-n", suite.ns])?.spec.startingDeadlineSeconds === 120
        ? true
        : undefined,
    );
    const after = condition(await waitForCondition(suite.ns, "sessions", "Ready", "True"), "Ready");
    expect(after?.lastTransitionTime).toBe(before?.lastTransitionTime);
  });
});

describe("operator restarts and leader election", () => {
  it("a restarted operator catches up with no writes for unchanged tasks, and makes no lists while idle", async () => {
    const ns = await createNamespace("restart");
    const first = await OperatorProcess.start({ namespaces: [ns] });
    for (let i = 0; i < 20; i++)
      apply(
        task(ns, `t${i}`, {
          task: "http.request",
          schedule: "H * * * *",
          params: { url: "https://example.com" },
        }),
      );
    for (let i = 0; i < 20; i++) await waitForCondition(ns, `t${i}`, "Ready", "True");
    await first.stop();

    const second = await OperatorProcess.start({ namespaces: [ns] });
    // Caught up once every task has been reconciled once.
    await eventually(
      async () =>
        (await second.metric("controller_runtime_reconcile_total", { result: "requeue_after" })) >=
        20
          ? true
          : undefined,
      {
        what: "restarted operator to reconcile all tasks",
      },
    );
    const lists = await second.metric("nightshift_apiserver_requests", { verb: "list" });
    await sleep(3000);
    expect(await second.writes()).toBe(0);
    expect(await second.metric("nightshift_apiserver_requests", { verb: "list" })).toBe(lists);
    await second.stop();
  });

  it("elects one leader; the standby takes over at once when the leader stops", async () => {
    const ns = await createNamespace("leader");
    const id = `nightshift-${ns}`;
    const a = await OperatorProcess.start({
      namespaces: [ns],
      leaderElect: true,
      leaderElectionId: id,
      leaderElectionNamespace: ns,
      identity: "replica-a",
    });
    await eventually(
      async () =>
        (await a.metric("leader_election_master_status", { name: id })) === 1 ? true : undefined,
      { what: "a to lead" },
    );
    const b = await OperatorProcess.start({
      namespaces: [ns],
      leaderElect: true,
      leaderElectionId: id,
      leaderElectionNamespace: ns,
      identity: "replica-b",
    });
    await sleep(3000);
    expect(await b.metric("leader_election_master_status", { name: id })).toBe(0);
    const lease = JSON.parse(kubectl(["get", "lease", id, "-n", ns, "-o", "json"]));
    expect(lease.spec.holderIdentity).toBe("replica-a");

    await readyTask(ns, "led", { schedule: "@daily" });
    expect(await b.writes()).toBe(0);

    const stoppedAt = Date.now();
    expect(await a.stop("SIGTERM")).toBe(0);
    await eventually(
      async () =>
        (await b.metric("leader_election_master_status", { name: id })) === 1 ? true : undefined,
      { what: "b to take over" },
    );
    // Released, not expired: well under the 15 s lease duration.
    expect(Date.now() - stoppedAt).toBeLessThan(8000);
    await readyTask(ns, "led-by-b", { schedule: "@daily" });
    await b.stop();
  });
});
