// The Helm chart: linted and rendered as a user's `helm` would, then installed
// on the shared control plane, where the operator runs under exactly the
// chart's RBAC (its ServiceAccount's token, not cluster admin).
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { CHART_CRD_PATH, CRD_PATH, crdYaml } from "../crds/generate.ts";
import { localReference } from "../scripts/images/definitions.ts";
import { createNamespace, eventually, kubectl, kubectlResult } from "./support/cluster.ts";
import { OperatorProcess } from "./support/operator.ts";
import { forPods, RUNNER_IMAGE, realNode, routeToRealNode } from "./support/real-node.ts";
import { startScheduledRun } from "./support/runs.ts";
import {
  condition,
  getJson,
  jobsOf,
  type Obj,
  patchSpec,
  readyTask,
  waitForCondition,
  waitForStatus,
  warningEvents,
} from "./support/tasks.ts";

const OPERATOR_IMAGE = localReference("nightshift/operator");
const CHART = fileURLToPath(new URL("../charts/nightshift", import.meta.url));
const RUN_FINALIZER = "nightshift.dev/run-accounting";
const helmHome = mkdtempSync(join(tmpdir(), "nightshift-helm-"));

function helmResult(args: string[]): { ok: boolean; output: string } {
  try {
    const output = execFileSync(join(inject("binDir"), "helm"), args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        KUBECONFIG: inject("kubeconfigPath"),
        HELM_CACHE_HOME: join(helmHome, "cache"),
        HELM_CONFIG_HOME: join(helmHome, "config"),
        HELM_DATA_HOME: join(helmHome, "data"),
      },
    });
    return { ok: true, output };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

function helm(args: string[]): string {
  const result = helmResult(args);
  if (!result.ok) throw new Error(`helm ${args.join(" ")}:\n${result.output}`);
  return result.output;
}

/** --set for each value; keys starting with "=" use --set-string (kept a string, e.g. an env value). */
/**
 * The suites share one cluster whose CRD the test setup applied: a release adopts it, as
 * anyone moving an existing CRD under Helm does (crds.keep leaves it in place afterwards).
 */
function adoptCrd(release: string, namespace: string): void {
  kubectl([
    "label",
    "crd",
    "backgroundtasks.nightshift.dev",
    "--overwrite",
    "app.kubernetes.io/managed-by=Helm",
  ]);
  kubectl([
    "annotate",
    "crd",
    "backgroundtasks.nightshift.dev",
    "--overwrite",
    `meta.helm.sh/release-name=${release}`,
    `meta.helm.sh/release-namespace=${namespace}`,
  ]);
}

function setFlags(values: Record<string, string>): string[] {
  return Object.entries(values).flatMap(([key, value]) =>
    key.startsWith("=")
      ? ["--set-string", `${key.slice(1)}=${value}`]
      : ["--set", `${key}=${value}`],
  );
}

/** The objects `helm template` renders with these --set values. */
function render(values: Record<string, string> = {}): Obj[] {
  const out = helm(["template", "nightshift", CHART, "-n", "nightshift", ...setFlags(values)]);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj & { kind: string })
    .filter(Boolean);
}

const kindOf = (o: Obj) => (o as unknown as { kind: string }).kind;
const isHook = (o: Obj) => Boolean(o.metadata.annotations?.["helm.sh/hook"]);

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
function rulesOf(objects: Obj[]): Rule[] {
  return objects
    .filter((o) => ["Role", "ClusterRole"].includes(kindOf(o)) && !isHook(o))
    .flatMap((o) => (o as unknown as { rules: Rule[] }).rules);
}

describe("Helm chart, rendered", () => {
  it("passes helm lint --strict, watching every namespace or a list", () => {
    expect(helm(["lint", "--strict", CHART])).toContain("0 chart(s) failed");
    expect(
      helm(["lint", "--strict", CHART, ...setFlags({ watchNamespaces: "{team-a,team-b}" })]),
    ).toContain("0 chart(s) failed");
  });

  it("carries the generated CRD unchanged, kept on uninstall", () => {
    expect(readFileSync(CHART_CRD_PATH, "utf8")).toBe(readFileSync(CRD_PATH, "utf8"));
    const crd = render().find((o) => kindOf(o) === "CustomResourceDefinition");
    expect(crd?.spec).toEqual(parse(crdYaml()).spec);
    expect(crd?.metadata.annotations?.["helm.sh/resource-policy"]).toBe("keep");
    expect(
      render({ "crds.enabled": "false" }).some((o) => kindOf(o) === "CustomResourceDefinition"),
    ).toBe(false);
  });

  it("rejects a misspelt value with an error naming the key", () => {
    for (const [key, value] of [
      ["operator.wokers", "3"],
      ["replicaCont", "1"],
      ["monitoring.serviceMonitor.enable", "true"],
    ] as const) {
      const result = helmResult(["template", "x", CHART, "--set", `${key}=${value}`]);
      expect(result.ok).toBe(false);
      expect(result.output).toContain(key.split(".").at(-1));
      expect(result.output).toMatch(/additional properties/i);
    }
    const bad = helmResult(["template", "x", CHART, "--set", "image.pullPolicy=Sometimes"]);
    expect(bad.output).toContain("pullPolicy");
  });

  it("grants a ClusterRole for every namespace, or a Role in each listed namespace", () => {
    const all = render();
    expect(all.filter((o) => kindOf(o) === "ClusterRole" && !isHook(o))).toHaveLength(1);
    expect(all.filter((o) => kindOf(o) === "ClusterRoleBinding" && !isHook(o))).toHaveLength(1);

    const listed = render({ watchNamespaces: "{team-a,team-b}" }).filter((o) => !isHook(o));
    expect(listed.some((o) => kindOf(o).startsWith("Cluster"))).toBe(false);
    const roles = listed.filter((o) => kindOf(o) === "Role");
    expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort()).toEqual([
      "nightshift/nightshift-leader-election",
      "team-a/nightshift",
      "team-b/nightshift",
    ]);
    expect(listed.filter((o) => kindOf(o) === "RoleBinding")).toHaveLength(3);
    const env = deploymentEnv(listed);
    expect(env.NIGHTSHIFT_NAMESPACES).toBe("team-a,team-b");
  });

  it("asks for no Secrets, no ConfigMaps, no wildcards and only the groups the operator uses", () => {
    for (const values of [{}, { watchNamespaces: "{team-a}" }] as Record<string, string>[]) {
      const rules = rulesOf(render(values));
      const groups = new Set(rules.flatMap((r) => r.apiGroups));
      expect([...groups].sort()).toEqual([
        "",
        "batch",
        "coordination.k8s.io",
        "events.k8s.io",
        "nightshift.dev",
      ]);
      const everything = rules.flatMap((r) => [...r.apiGroups, ...r.resources, ...r.verbs]);
      expect(everything).not.toContain("*");
      const resources = rules.flatMap((r) => r.resources);
      expect(resources).not.toContain("secrets");
      expect(resources).not.toContain("configmaps");
    }
  });

  it("creates the default task priority classes, and Kueue's too where its API exists", () => {
    const classes = (objects: Obj[], kind: string) =>
      objects
        .filter((o) => kindOf(o) === kind)
        .map((o) => `${o.metadata.name}=${(o as unknown as { value: number }).value}`)
        .sort();
    expect(classes(render(), "PriorityClass")).toEqual([
      "nightshift-critical=100000",
      "nightshift-high=1000",
      "nightshift-low=-100",
    ]);
    expect(classes(render(), "WorkloadPriorityClass")).toEqual([]);
    const withKueue = parseAllDocuments(
      helm([
        "template",
        "nightshift",
        CHART,
        "--api-versions",
        "kueue.x-k8s.io/v1beta2/WorkloadPriorityClass",
      ]),
    ).map((d) => d.toJS() as Obj);
    expect(classes(withKueue, "WorkloadPriorityClass")).toHaveLength(3);
    expect(classes(render({ "taskPriorityClasses.create": "false" }), "PriorityClass")).toEqual([]);
    const env = deploymentEnv(render());
    expect(env.NIGHTSHIFT_PRIORITY_CLASSES).toBe(
      "low=nightshift-low,high=nightshift-high,critical=nightshift-critical",
    );
  });

  it("adds a PodDisruptionBudget only with more than one replica", () => {
    expect(render().some((o) => kindOf(o) === "PodDisruptionBudget")).toBe(true);
    expect(render({ replicaCount: "1" }).some((o) => kindOf(o) === "PodDisruptionBudget")).toBe(
      false,
    );
    const single = helmResult(["template", "x", CHART, "--set", "leaderElection.enabled=false"]);
    expect(single.ok).toBe(false);
    expect(single.output).toContain("replicaCount > 1 needs leaderElection.enabled");
  });

  it("passes every operator setting to the operator", () => {
    const env = deploymentEnv(
      render({
        "operator.workers": "9",
        "operator.logLevel": "debug",
        "operator.priorityClasses.high": "batch-high",
        "operator.priorityClasses.low": "batch-low",
        "runner.image.repository": "registry.example/runner",
        "runner.image.tag": "1.2.3",
        "runner.image.digest": `sha256:${"a".repeat(64)}`,
        "runner.image.pullPolicy": "Always",
        "customTasks.allowedImagePrefixes": "{registry.example/batch/,ghcr.io/acme/}",
      }),
    );
    expect(env).toMatchObject({
      NIGHTSHIFT_WORKERS: "9",
      LOG_LEVEL: "debug",
      NIGHTSHIFT_PRIORITY_CLASSES: "low=batch-low,high=batch-high,critical=nightshift-critical",
      NIGHTSHIFT_RUNNER_IMAGE: `registry.example/runner:1.2.3@sha256:${"a".repeat(64)}`,
      NIGHTSHIFT_RUNNER_IMAGE_PULL_POLICY: "Always",
      NIGHTSHIFT_ALLOWED_IMAGE_PREFIXES: "registry.example/batch/,ghcr.io/acme/",
      NIGHTSHIFT_NAMESPACES: "",
      NIGHTSHIFT_LEADER_ELECT: "true",
    });
  });

  it("documents every value on the line above it", () => {
    const lines = readFileSync(join(CHART, "values.yaml"), "utf8").split("\n");
    const undocumented = lines.filter(
      (line, i) => /^\s*[\w.-]+:/.test(line) && !lines[i - 1]?.trim().startsWith("#"),
    );
    expect(undocumented).toEqual([]);
  });

  it("runs the operator under Pod Security restricted, spread over nodes and zones", async () => {
    const deployment = render().find((o) => kindOf(o) === "Deployment");
    const podSpec = deployment?.spec.template.spec;
    expect(
      podSpec.topologySpreadConstraints.map((c: { topologyKey: string }) => c.topologyKey),
    ).toEqual(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    // The API server's Pod Security admission decides, in a namespace that enforces "restricted".
    const ns = await createNamespace("helm-psa");
    kubectl(["label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted"]);
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "operator", namespace: ns },
      spec: { ...podSpec, serviceAccountName: "default" },
    };
    // Retried only while the namespace's default ServiceAccount is being created.
    const result = await eventually(() => {
      const r = kubectlResult(["create", "--dry-run=server", "-f", "-"], JSON.stringify(pod));
      return r.ok || !r.output.includes("serviceaccount") ? r : undefined;
    });
    expect(result).toMatchObject({ ok: true });
  });
});

function deploymentEnv(objects: Obj[]): Record<string, string> {
  const deployment = objects.find((o) => kindOf(o) === "Deployment");
  const container = deployment?.spec.template.spec.containers[0];
  return Object.fromEntries(
    (container.env as Array<{ name: string; value?: string }>)
      .filter((e) => e.value !== undefined)
      .map((e) => [e.name, e.value as string]),
  );
}

/** A kubeconfig that authenticates as a ServiceAccount, with a token from the TokenRequest API. */
function serviceAccountKubeconfig(namespace: string, name: string): string {
  const admin = JSON.parse(kubectl(["config", "view", "--raw", "--minify", "-o", "json"]));
  const cluster = admin.clusters[0].cluster;
  const token = kubectl(["create", "token", name, "-n", namespace, "--duration=2h"]).trim();
  const path = join(helmHome, `${namespace}-${name}.kubeconfig`);
  writeFileSync(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "local", cluster }],
      users: [{ name: name, user: { token } }],
      contexts: [{ name: "sa", context: { cluster: "local", user: name } }],
      "current-context": "sa",
    }),
  );
  return path;
}

describe("Helm chart, installed", () => {
  const release = `ns-${Date.now().toString(36)}`;
  let system = "";
  let tasks = "";
  let other = "";
  let serviceAccount = "";
  let operator: OperatorProcess | undefined;
  const installValues = () => ({
    watchNamespaces: `{${tasks}}`,
    // No real node runs the operator image here yet: the Deployment stays at
    // zero and the operator runs beside the tests under the chart's ServiceAccount.
    replicaCount: "0",
    "image.repository": "registry.example/nightshift/operator",
    "runner.image.repository": "registry.example/nightshift/task-runner",
    // Cluster-wide classes: the Kueue suite makes its own in the same cluster.
    "taskPriorityClasses.create": "false",
  });

  beforeAll(async () => {
    system = await createNamespace("helm-sys");
    tasks = await createNamespace("helm-tasks");
    other = await createNamespace("helm-other");
    // Operator and run pods alike must pass Pod Security "restricted".
    for (const ns of [system, tasks])
      kubectl(["label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted"]);
    adoptCrd(release, system);
    helm(["install", release, CHART, "-n", system, ...setFlags(installValues())]);
    serviceAccount = `${release}-nightshift`;
  });

  afterAll(async () => {
    await operator?.stop();
    helmResult(["uninstall", release, "-n", system, "--no-hooks"]);
  });

  /** `kubectl auth can-i` as the operator; "kind/status" asks about the status subresource. */
  function canI(verb: string, resource: string, namespace: string): boolean {
    const [what, subresource] = resource.endsWith("/status")
      ? [resource.slice(0, -"/status".length), "status"]
      : [resource, undefined];
    const result = kubectlResult([
      "auth",
      "can-i",
      verb,
      what,
      "-n",
      namespace,
      ...(subresource ? [`--subresource=${subresource}`] : []),
      `--as=system:serviceaccount:${system}:${serviceAccount}`,
    ]);
    return result.output.trim() === "yes";
  }

  it("lets the operator's ServiceAccount do everything it needs and nothing with Secrets", () => {
    const needed: Array<[string, string, string]> = [
      ["list", "backgroundtasks.nightshift.dev", tasks],
      ["watch", "backgroundtasks.nightshift.dev", tasks],
      ["patch", "backgroundtasks.nightshift.dev/status", tasks],
      ["list", "cronjobs.batch", tasks],
      ["watch", "cronjobs.batch", tasks],
      ["create", "cronjobs.batch", tasks],
      ["patch", "cronjobs.batch", tasks],
      ["list", "jobs.batch", tasks],
      ["watch", "jobs.batch", tasks],
      ["create", "jobs.batch", tasks],
      ["patch", "jobs.batch", tasks],
      ["delete", "jobs.batch", tasks],
      ["list", "pods", tasks],
      ["watch", "pods", tasks],
      ["create", "events.events.k8s.io", tasks],
      ["create", "leases.coordination.k8s.io", system],
      ["get", "leases.coordination.k8s.io/nightshift-operator", system],
      ["update", "leases.coordination.k8s.io/nightshift-operator", system],
    ];
    expect(needed.filter(([verb, resource, ns]) => !canI(verb, resource, ns))).toEqual([]);

    const forbidden: Array<[string, string, string]> = [];
    for (const ns of [tasks, system, other])
      for (const verb of ["get", "list", "watch"])
        for (const resource of ["secrets", "configmaps"]) forbidden.push([verb, resource, ns]);
    forbidden.push(
      ["list", "backgroundtasks.nightshift.dev", other],
      ["create", "backgroundtasks.nightshift.dev", tasks],
      ["update", "backgroundtasks.nightshift.dev", tasks],
      ["patch", "backgroundtasks.nightshift.dev", tasks],
      ["delete", "backgroundtasks.nightshift.dev", tasks],
      ["delete", "cronjobs.batch", tasks],
      ["create", "pods", tasks],
      ["delete", "pods", tasks],
      ["list", "jobs.batch", other],
      ["get", "leases.coordination.k8s.io/someone-else", system],
      ["list", "deployments.apps", tasks],
      ["create", "roles.rbac.authorization.k8s.io", tasks],
      ["list", "customresourcedefinitions.apiextensions.k8s.io", tasks],
      ["list", "nodes", tasks],
      ["*", "*", tasks],
    );
    expect(forbidden.filter(([verb, resource, ns]) => canI(verb, resource, ns))).toEqual([]);
  });

  it("is enough for the operator: it reconciles tasks and records runs under that RBAC alone", async () => {
    operator = await OperatorProcess.start({
      namespaces: [tasks],
      kubeconfig: serviceAccountKubeconfig(system, serviceAccount),
      leaderElect: true,
      leaderElectionNamespace: system,
      leaderElectionId: "nightshift-operator",
      runnerImage: "registry.example/nightshift/task-runner:0.1.0",
    });
    await readyTask(tasks, "webhook", { successfulRunsHistoryLimit: 1 });
    // Two runs: both recorded (Jobs patched, status written), the older one pruned (Job deleted).
    for (const name of ["webhook-run-1", "webhook-run-2"]) {
      startScheduledRun(tasks, "webhook", name);
      await waitForStatus(tasks, "webhook", `${name} recorded`, (s) => s.lastRun?.jobName === name);
    }
    await eventually(() => (jobsOf(tasks, "webhook").length === 1 ? true : undefined), {
      what: "the older run pruned",
      timeoutMs: 60_000,
    });
    // A run the operator starts itself (Job create, Normal event).
    kubectl(["annotate", "bgt", "webhook", "-n", tasks, "nightshift.dev/run-now=1"]);
    await eventually(
      () => (warningEvents(tasks, "webhook", "RunStarted").length ? true : undefined),
      { what: "the run-now run started", timeoutMs: 60_000 },
    );
    // A long run the operator holds with its finalizer until it is recorded.
    startScheduledRun(tasks, "webhook", "webhook-long", { duration: "30m" });
    await eventually(
      () =>
        getJson(["job", "webhook-long", "-n", tasks])?.metadata.finalizers?.includes(RUN_FINALIZER)
          ? true
          : undefined,
      { what: "the long run held by the run-accounting finalizer" },
    );
    // A missing Secret, learnt from the run pod that needs it.
    await readyTask(tasks, "needs-secret", {
      env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "absent", key: "t" } } }],
    });
    startScheduledRun(tasks, "needs-secret", "needs-secret-run", {
      configError: 'secret "absent" not found',
    });
    const bgt = await waitForCondition(
      tasks,
      "needs-secret",
      "SpecValid",
      "False",
      "MissingSecret",
    );
    expect(condition(bgt, "SpecValid")?.message).toContain('Secret "absent" does not exist');
    await eventually(
      () => (warningEvents(tasks, "needs-secret", "MissingSecret").length ? true : undefined),
      { what: "a Warning event written by the operator" },
    );
    // `helm test`'s script, with its own ServiceAccount: the operator answers, a throwaway task gets Ready.
    const helmTest = await runHookScript(
      "templates/tests/operator-test.yaml",
      release,
      system,
      installValues(),
      { METRICS_URL: `http://127.0.0.1:${operator.port}` },
    );
    expect(helmTest).toMatch(/BackgroundTask helm-test-\w+ is Ready/);
    expect(operator.output).not.toMatch(/forbidden/i);
    expect(await operator.metric("leader_election_master_status")).toBe(1);
  });

  it("upgrades: a changed value rolls the operator's pod template, a changed CRD reaches the cluster", () => {
    const before = getJson(["deployment", serviceAccount, "-n", system]);
    // The next chart version's CRD differs (here: one description).
    const next = join(helmHome, "next-chart");
    cpSync(CHART, next, { recursive: true });
    const crdFile = join(next, "files", "crds", "nightshift.dev_backgroundtasks.yaml");
    writeFileSync(
      crdFile,
      readFileSync(crdFile, "utf8").replace(
        "description: nightshift.dev/v1alpha1",
        "description: nightshift.dev/v1alpha1 (next chart)",
      ),
    );
    const upgradeValues = {
      ...installValues(),
      "operator.logLevel": "debug",
      "operator.workers": "2",
    };
    const apiVersionDescription = () =>
      kubectl([
        "get",
        "crd",
        "backgroundtasks.nightshift.dev",
        "-o",
        "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.apiVersion.description}",
      ]);
    helm(["upgrade", release, next, "-n", system, ...setFlags(upgradeValues)]);
    expect(apiVersionDescription()).toBe("nightshift.dev/v1alpha1 (next chart)");
    helm(["upgrade", release, CHART, "-n", system, ...setFlags(upgradeValues)]);
    expect(apiVersionDescription()).toBe("nightshift.dev/v1alpha1");

    const after = getJson(["deployment", serviceAccount, "-n", system]);
    expect(after?.metadata.generation).toBeGreaterThan(before?.metadata.generation);
    const env = Object.fromEntries(
      after?.spec.template.spec.containers[0].env.map((e: { name: string; value?: string }) => [
        e.name,
        e.value,
      ]),
    );
    expect(env).toMatchObject({ LOG_LEVEL: "debug", NIGHTSHIFT_WORKERS: "2" });
    expect(canI("patch", "jobs.batch", tasks)).toBe(true);
    expect(canI("list", "secrets", tasks)).toBe(false);
  });

  it("uninstalls everything it installed but the CRD, and no run Job stays held", async () => {
    await operator?.stop();
    operator = undefined;
    const held = jobsOf(tasks, "webhook").filter((j) =>
      (j.metadata.finalizers ?? []).includes(RUN_FINALIZER),
    );
    expect(held.map((j) => j.metadata.name)).toContain("webhook-long");

    // kwok would only pretend to run the hook's pod: run its script here, under the hook's RBAC.
    helm(["uninstall", release, "-n", system, "--no-hooks"]);
    const output = await runHookScript(
      "templates/uninstall-release-run-jobs.yaml",
      release,
      system,
      installValues(),
    );
    expect(output).toMatch(/released [1-9]\d* run Job/);

    expect(
      jobsOf(tasks, "webhook").filter((j) => (j.metadata.finalizers ?? []).includes(RUN_FINALIZER)),
    ).toEqual([]);
    const left = kubectl([
      "get",
      "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,configmaps,jobs",
      "-A",
      "-l",
      `app.kubernetes.io/instance=${release}`,
      "-o",
      "name",
    ]).trim();
    expect(left).toBe("");
    const cluster = kubectl([
      "get",
      "clusterroles,clusterrolebindings",
      "-l",
      `app.kubernetes.io/instance=${release}`,
      "-o",
      "name",
    ]).trim();
    expect(cluster).toBe("");
    expect(getJson(["crd", "backgroundtasks.nightshift.dev"])).toBeDefined();
  });
});

/**
 * Runs a hook pod's script here instead of in a pod (kwok would only pretend
 * to run it): the hook's ServiceAccount and RBAC from the chart, then its
 * script with that account's token and the pod's environment. Returns its output.
 */
async function runHookScript(
  template: string,
  release: string,
  namespace: string,
  values: Record<string, string>,
  envOverrides: Record<string, string> = {},
): Promise<string> {
  const out = helm([
    "template",
    release,
    CHART,
    "-n",
    namespace,
    "--show-only",
    template,
    ...setFlags(values),
  ]);
  const objects = parseAllDocuments(out).map((d) => d.toJS() as Obj & { kind: string });
  const rbac = objects.filter((o) =>
    ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(o.kind),
  );
  const workload = objects.find((o) => o.kind === "Job" || o.kind === "Pod");
  const podSpec = workload?.kind === "Job" ? workload.spec.template.spec : workload?.spec;
  const container = podSpec.containers[0];
  const configMap = objects.find((o) => o.kind === "ConfigMap") as unknown as {
    data: Record<string, string>;
  };
  const scriptName = (container.command as string[])[1]?.split("/").at(-1) as string;
  const script = join(helmHome, scriptName);
  writeFileSync(script, configMap.data[scriptName] as string);
  const list = JSON.stringify({ apiVersion: "v1", kind: "List", items: rbac });
  kubectl(["apply", "-f", "-"], list);
  const account = podSpec.serviceAccountName as string;
  const env = Object.fromEntries(
    (container.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]),
  );
  const admin = JSON.parse(kubectl(["config", "view", "--raw", "--minify", "-o", "json"]));
  const server = new URL(admin.clusters[0].cluster.server);
  const tokenFile = join(helmHome, `${account}.token`);
  writeFileSync(
    tokenFile,
    kubectl(["create", "token", account, "-n", namespace, "--duration=1h"]).trim(),
  );
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [script], {
        env: {
          ...process.env,
          ...env,
          KUBERNETES_SERVICE_HOST: server.hostname,
          KUBERNETES_SERVICE_PORT: server.port,
          TOKEN_FILE: tokenFile,
          NODE_EXTRA_CA_CERTS: admin.clusters[0].cluster["certificate-authority"],
          ...envOverrides,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let text = "";
      child.stdout.on("data", (c: Buffer) => {
        text += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        text += c.toString();
      });
      child.on("exit", (code) =>
        code === 0 ? resolve(text) : reject(new Error(`${scriptName} exited ${code}:\n${text}`)),
      );
    });
  } finally {
    kubectl(["delete", "-f", "-", "--wait=false"], list);
  }
}

/**
 * Pods on the real node reach the API server through this: a TCP relay on the
 * node's bridge address to the loopback-only API server (there is no
 * kube-proxy), named kubernetes.default.svc in the pods' /etc/hosts so TLS
 * checks the serving certificate's own name. A child process of its own: the
 * test's event loop stops while helm and kubectl run synchronously.
 */
async function apiServerRelay(hostAddress: string): Promise<{ port: number; close(): void }> {
  const admin = JSON.parse(kubectl(["config", "view", "--raw", "--minify", "-o", "json"]));
  const target = new URL(admin.clusters[0].cluster.server);
  const script = `
    const net = require("node:net");
    const server = net.createServer((socket) => {
      const upstream = net.connect(${Number(target.port)}, ${JSON.stringify(target.hostname)});
      socket.pipe(upstream).pipe(socket);
      const close = () => { socket.destroy(); upstream.destroy(); };
      socket.on("error", close);
      upstream.on("error", close);
    });
    server.listen(0, ${JSON.stringify(hostAddress)}, () => console.log(server.address().port));`;
  const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once("exit", (code) => reject(new Error(`relay exited ${code}`)));
  });
  return { port, close: () => child.kill() };
}

describe("Helm chart, installed on the real node", () => {
  const release = `real-${Date.now().toString(36)}`;
  let system = "";
  let tasks = "";
  let relay: { port: number; close(): void } | undefined;
  let peer: Server | undefined;
  let requests = 0;
  let peerUrl = "";
  let values: Record<string, string> = {};
  const fullname = `${release}-nightshift`;

  beforeAll(async () => {
    const node = realNode();
    system = await createNamespace("helm-real-sys");
    tasks = await createNamespace("helm-real-tasks");
    for (const ns of [system, tasks]) {
      routeToRealNode(ns);
      kubectl(["label", "ns", ns, "pod-security.kubernetes.io/enforce=restricted"]);
    }
    relay = await apiServerRelay(node.hostAddress);
    // The runs' peer: a webhook on the host, slow when asked, so a run can be in flight.
    peer = createHttpServer((req, res) => {
      requests++;
      const delay = Number(new URL(req.url ?? "/", "http://x").searchParams.get("delay") ?? "0");
      setTimeout(() => res.end("ok"), delay);
    });
    await new Promise<void>((resolve) => peer?.listen(0, "0.0.0.0", resolve));
    peerUrl = forPods(`http://127.0.0.1:${(peer.address() as AddressInfo).port}`);
    adoptCrd(release, system);
    values = {
      watchNamespaces: `{${tasks}}`,
      "image.repository": OPERATOR_IMAGE.split(":")[0] as string,
      "image.tag": OPERATOR_IMAGE.split(":")[1] as string,
      "image.pullPolicy": "Never",
      "runner.image.repository": RUNNER_IMAGE.split(":")[0] as string,
      "runner.image.tag": RUNNER_IMAGE.split(":")[1] as string,
      "runner.image.pullPolicy": "Never",
      "hostAliases[0].ip": node.hostAddress,
      "hostAliases[0].hostnames": "{kubernetes.default.svc}",
      "extraEnv[0].name": "KUBERNETES_SERVICE_HOST",
      "extraEnv[0].value": "kubernetes.default.svc",
      "extraEnv[1].name": "KUBERNETES_SERVICE_PORT",
      "=extraEnv[1].value": String(relay.port),
      "taskPriorityClasses.create": "false",
    };
    helm(["install", release, CHART, "-n", system, ...setFlags(values)]);
    await operatorReady();
  });

  /** Both operator replicas of the current revision Ready; on a timeout, what the pods say. */
  async function operatorReady(): Promise<void> {
    try {
      await eventually(
        () => {
          const d = getJson(["deployment", fullname, "-n", system]);
          return d?.status?.observedGeneration === d?.metadata.generation &&
            d?.status?.updatedReplicas === 2 &&
            d?.status?.readyReplicas === 2 &&
            d?.status?.replicas === 2
            ? true
            : undefined;
        },
        { what: "two Ready operator replicas", timeoutMs: 300_000, intervalMs: 1000 },
      );
    } catch (error) {
      console.log(kubectlResult(["describe", "pods", "-n", system]).output.slice(-6000));
      console.log(
        kubectlResult([
          "logs",
          "-n",
          system,
          "-l",
          "app.kubernetes.io/component=operator",
          "--tail=40",
        ]).output,
      );
      throw error;
    }
  }

  afterAll(async () => {
    helmResult(["uninstall", release, "-n", system, "--wait", "--timeout=3m"]);
    relay?.close();
    peer?.close();
  });

  afterEach((context) => {
    if (context.task.result?.state === "fail")
      for (const component of ["test", "uninstall"])
        console.log(
          kubectlResult([
            "logs",
            "-n",
            system,
            "-l",
            `app.kubernetes.io/component=${component}`,
            "--tail=30",
          ]).output,
        );
    if (context.task.result?.state === "fail")
      console.log(
        kubectlResult([
          "logs",
          "-n",
          system,
          "-l",
          "app.kubernetes.io/component=operator",
          "--tail=60",
        ]).output,
      );
  });

  it("runs two operator replicas that become Ready, one leading, and passes helm test", {
    timeout: 400_000,
  }, async () => {
    const deployment = getJson(["deployment", fullname, "-n", system]);
    expect(deployment?.status?.readyReplicas).toBe(2);
    const lease = await eventually(
      () => getJson(["lease", "nightshift-operator", "-n", system])?.spec.holderIdentity,
      { what: "a leader", timeoutMs: 60_000 },
    );
    expect(lease).toMatch(new RegExp(`^${fullname}-`));
    const test = helmResult(["test", release, "-n", system, "--timeout=5m"]);
    expect(test).toMatchObject({ ok: true });
    expect(test.output).toMatch(/Phase:\s+Succeeded/);
  });

  /** Points the ping task at the peer with a delay (ms) and starts a run of it now. */
  async function startPingRun(delayMs: number, runNow: string): Promise<void> {
    patchSpec(tasks, "ping", { params: { url: `${peerUrl}/?delay=${delayMs}` } });
    await waitForCondition(tasks, "ping", "Ready", "True");
    kubectl([
      "annotate",
      "--overwrite",
      "bgt",
      "ping",
      "-n",
      tasks,
      `nightshift.dev/run-now=${runNow}`,
    ]);
  }

  it("reconciles a task whose runs really execute; an upgrade mid-run counts that run once", {
    timeout: 900_000,
  }, async () => {
    await readyTask(tasks, "ping", { params: { url: `${peerUrl}/?delay=0` } });
    kubectl(["annotate", "--overwrite", "bgt", "ping", "-n", tasks, "nightshift.dev/run-now=1"]);
    await waitForStatus(tasks, "ping", "the first run", (s) => s.runs?.succeeded === 1, 180_000);
    expect(requests).toBe(1);

    // A run in flight (20 s) while `helm upgrade` rolls both operator pods.
    await startPingRun(20000, "2");
    await eventually(() => (requests === 2 ? true : undefined), {
      what: "the second run calling the peer",
      timeoutMs: 120_000,
    });
    const before = getJson(["deployment", fullname, "-n", system]);
    helm([
      "upgrade",
      release,
      CHART,
      "-n",
      system,
      ...setFlags({ ...values, "operator.logLevel": "debug", "operator.workers": "2" }),
    ]);
    await operatorReady();
    await eventually(
      () =>
        (
          JSON.parse(
            kubectl([
              "get",
              "pods",
              "-n",
              system,
              "-l",
              "app.kubernetes.io/component=operator",
              "-o",
              "json",
            ]),
          ).items as Obj[]
        ).length === 2
          ? true
          : undefined,
      { what: "the old operator pods gone", timeoutMs: 120_000 },
    );
    const after = getJson(["deployment", fullname, "-n", system]);
    expect(after?.metadata.generation).toBeGreaterThan(before?.metadata.generation);
    const pods = JSON.parse(
      kubectl([
        "get",
        "pods",
        "-n",
        system,
        "-l",
        "app.kubernetes.io/component=operator",
        "-o",
        "json",
      ]),
    ).items as Obj[];
    expect(
      pods.every((p) =>
        p.spec.containers[0].env.some(
          (e: { name: string; value?: string }) => e.name === "LOG_LEVEL" && e.value === "debug",
        ),
      ),
    ).toBe(true);
    const status = (
      await waitForStatus(
        tasks,
        "ping",
        "the in-flight run recorded",
        (s) => s.runs?.total >= 2,
        180_000,
      )
    ).status;
    expect(status?.runs).toMatchObject({ total: 2, succeeded: 2 });
    // Counted once: a third run brings the total to exactly three.
    kubectl([
      "patch",
      "bgt",
      "ping",
      "-n",
      tasks,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { params: { url: `${peerUrl}/?delay=0` } } }),
    ]);
    kubectl(["annotate", "--overwrite", "bgt", "ping", "-n", tasks, "nightshift.dev/run-now=3"]);
    const third = await waitForStatus(
      tasks,
      "ping",
      "the third run",
      (s) => s.runs?.total >= 3,
      180_000,
    );
    expect(third.status?.runs).toMatchObject({ total: 3, succeeded: 3 });
    expect(requests).toBe(3);
  });

  it("uninstalls everything but the CRD; the hook releases run Jobs still held", {
    timeout: 600_000,
  }, async () => {
    // A run still going when the operator goes away.
    await startPingRun(60000, "4");
    await eventually(
      () =>
        jobsOf(tasks, "ping").some(
          (j) => !j.status?.completionTime && (j.metadata.finalizers ?? []).includes(RUN_FINALIZER),
        )
          ? true
          : undefined,
      { what: "a held run in flight", timeoutMs: 120_000 },
    );
    helm(["uninstall", release, "-n", system, "--wait", "--timeout=5m"]);
    expect(
      jobsOf(tasks, "ping").filter((j) => (j.metadata.finalizers ?? []).includes(RUN_FINALIZER)),
    ).toEqual([]);
    // Pods of the deleted hook Job may take a moment to go.
    await eventually(
      () =>
        kubectl([
          "get",
          "deployments,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,configmaps,jobs",
          "-A",
          "-l",
          `app.kubernetes.io/instance=${release}`,
          "-o",
          "name",
        ]).trim() === ""
          ? true
          : undefined,
      { what: "nothing of the release left", timeoutMs: 120_000 },
    );
    expect(getJson(["crd", "backgroundtasks.nightshift.dev"])).toBeDefined();
  });
});
