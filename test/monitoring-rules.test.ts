// The shipped Prometheus rules: valid for promtool, unit-tested with promtool
// (test/monitoring/rules.test.yaml), and each alert documented with a runbook.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { RULES_FILE } from "./controlplane/monitoring.ts";

const RULE_TESTS = fileURLToPath(new URL("./monitoring/rules.test.yaml", import.meta.url));
const DOCS = fileURLToPath(new URL("../docs/monitoring.md", import.meta.url));

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const groups = (parse(readFileSync(RULES_FILE, "utf8")) as { groups: Array<{ rules: Rule[] }> })
  .groups;
const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert);

function promtool(args: string[]): string {
  return execFileSync("promtool", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("Prometheus rules", () => {
  it("pass promtool check rules", () => {
    expect(promtool(["check", "rules", RULES_FILE])).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("pass their promtool unit tests: every alert firing and not firing", () => {
    expect(promtool(["test", "rules", RULE_TESTS])).toContain("SUCCESS");
    const tests = (
      parse(readFileSync(RULE_TESTS, "utf8")) as {
        tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
      }
    ).tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const alert of alerts) {
      const cases = tests.filter((t) => t.alertname === alert.alert);
      expect(
        cases.some((c) => c.exp_alerts.length > 0),
        `${alert.alert} fires in a test`,
      ).toBe(true);
    }
  });

  it("give every alert a severity, a summary and a description naming the task, and a runbook", () => {
    const docs = readFileSync(DOCS, "utf8");
    for (const alert of alerts) {
      const name = alert.alert ?? "";
      expect(["warning", "critical"], name).toContain(alert.labels?.severity);
      expect(alert.annotations?.summary, name).toBeTruthy();
      expect(alert.annotations?.description, name).toBeTruthy();
      if (name.startsWith("BackgroundTask")) {
        for (const text of [alert.annotations?.summary, alert.annotations?.description])
          expect(text, name).toContain("{{ $labels.namespace }}/{{ $labels.backgroundtask }}");
      }
      expect(alert.annotations?.runbook_url, name).toBe(`docs/monitoring.md#${name.toLowerCase()}`);
      expect(docs, `runbook heading for ${name}`).toContain(`### ${name}\n`);
    }
  });
});
