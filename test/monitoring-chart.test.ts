// The chart's monitoring objects, rendered by the real helm: off by default,
// the Prometheus operator's kinds only where its API exists (or when forced),
// and carrying exactly the tested rules, dashboard and kube-state-metrics config.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, inject, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { DASHBOARD_FILE, KSM_CONFIG, RULES_FILE } from "./controlplane/monitoring.ts";

const CHART = fileURLToPath(new URL("../charts/nightshift", import.meta.url));
const helmHome = mkdtempSync(join(tmpdir(), "nightshift-helm-monitoring-"));

interface Rendered {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, any>;
  data?: Record<string, string>;
}

function render(args: string[]): Rendered[] {
  const output = execFileSync(
    join(inject("binDir"), "helm"),
    ["template", "nightshift", CHART, "--namespace", "nightshift-system", ...args],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(helmHome, "cache"),
        HELM_CONFIG_HOME: join(helmHome, "config"),
        HELM_DATA_HOME: join(helmHome, "data"),
      },
    },
  );
  return parseAllDocuments(output)
    .map((d) => d.toJS() as Rendered)
    .filter(Boolean);
}

const kinds = (objects: Rendered[]) => objects.map((o) => o.kind);
const everything = [
  "--set=monitoring.serviceMonitor.enabled=true",
  "--set=monitoring.prometheusRule.enabled=true",
  "--set=monitoring.dashboards.enabled=true",
  "--set=monitoring.kubeStateMetricsConfig.enabled=true",
];

describe("chart monitoring objects", () => {
  it("renders none by default", () => {
    const objects = render([]);
    expect(kinds(objects)).not.toContain("ServiceMonitor");
    expect(kinds(objects)).not.toContain("PrometheusRule");
    expect(objects.some((o) => o.metadata.labels?.grafana_dashboard)).toBe(false);
  });

  it("renders ServiceMonitor and PrometheusRule only where monitoring.coreos.com/v1 exists, or forced", () => {
    expect(kinds(render(everything))).not.toContain("ServiceMonitor");
    expect(kinds(render(everything))).not.toContain("PrometheusRule");
    const withApi = render([
      ...everything,
      "--api-versions=monitoring.coreos.com/v1/ServiceMonitor",
      "--api-versions=monitoring.coreos.com/v1/PrometheusRule",
    ]);
    expect(kinds(withApi)).toEqual(expect.arrayContaining(["ServiceMonitor", "PrometheusRule"]));
    const forced = render([
      ...everything,
      "--set=monitoring.serviceMonitor.force=true",
      "--set=monitoring.prometheusRule.force=true",
      "--set=monitoring.serviceMonitor.additionalLabels.release=kube-prometheus-stack",
      "--set=monitoring.prometheusRule.additionalLabels.release=kube-prometheus-stack",
      "--set=monitoring.prometheusRule.runbookBaseUrl=https://git.example/nightshift/blob/main/",
    ]);
    const monitor = forced.find((o) => o.kind === "ServiceMonitor");
    const service = forced.find(
      (o) => o.kind === "Service" && o.spec?.ports?.[0]?.name === "metrics",
    );
    expect(monitor?.metadata.labels?.release).toBe("kube-prometheus-stack");
    expect(monitor?.spec?.endpoints).toEqual([
      { port: "metrics", path: "/metrics", honorLabels: true },
    ]);
    for (const [key, value] of Object.entries(monitor?.spec?.selector.matchLabels ?? {}))
      expect(service?.metadata.labels?.[key]).toBe(value);

    const rule = forced.find((o) => o.kind === "PrometheusRule");
    expect(rule?.metadata.labels?.release).toBe("kube-prometheus-stack");
    const shipped = parse(readFileSync(RULES_FILE, "utf8")).groups;
    const rendered = rule?.spec?.groups;
    expect(rendered.map((g: { name: string }) => g.name)).toEqual(
      shipped.map((g: { name: string }) => g.name),
    );
    const failing = rendered[1].rules.find(
      (r: { alert?: string }) => r.alert === "BackgroundTaskFailing",
    );
    expect(failing.annotations.runbook_url).toBe(
      "https://git.example/nightshift/blob/main/docs/monitoring.md#backgroundtaskfailing",
    );
    expect(failing.expr).toBe(shipped[1].rules[0].expr);
  });

  it("ships the dashboard labelled for Grafana's sidecar and the kube-state-metrics config", () => {
    const objects = render(everything);
    const dashboard = objects.find((o) => o.metadata.labels?.grafana_dashboard === "1");
    expect(JSON.parse(dashboard?.data?.["nightshift.json"] ?? "{}")).toEqual(
      JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")),
    );
    const ksm = objects.find((o) => o.data?.["kube-state-metrics-config.yaml"]);
    expect(parse(ksm?.data?.["kube-state-metrics-config.yaml"] ?? "")).toEqual(
      parse(readFileSync(KSM_CONFIG, "utf8")),
    );
  });
});
