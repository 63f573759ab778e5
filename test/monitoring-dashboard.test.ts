// The shipped Grafana dashboard passes Grafana's dashboard-linter (built from
// Go modules) in strict mode, and has the variables and sections users expect.
// That its queries return data is proven in monitoring.test.ts.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { DASHBOARD_FILE } from "./controlplane/monitoring.ts";

describe("Grafana dashboard", () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as {
    uid: string;
    templating: { list: Array<{ name: string; type: string }> };
    panels: Array<{ type: string; title: string }>;
  };

  it("passes dashboard-linter --strict", () => {
    const output = execFileSync(
      join(inject("binDir"), "dashboard-linter"),
      ["lint", "--strict", "--config", join(dirname(DASHBOARD_FILE), ".lint"), DASHBOARD_FILE],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(output).not.toMatch(/❌|⚠/);
  });

  it("has datasource, namespace and task variables and the fleet, task and operator sections", () => {
    expect(dashboard.templating.list.map((v) => `${v.name}:${v.type}`)).toEqual([
      "datasource:datasource",
      "namespace:query",
      "task:query",
    ]);
    expect(dashboard.panels.filter((p) => p.type === "row").map((p) => p.title)).toEqual([
      "Fleet overview",
      "Task detail",
      "Operator health",
    ]);
  });
});
