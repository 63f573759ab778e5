// The kube-state-metrics values snippet users copy carries exactly the
// CustomResourceState config the tests run kube-state-metrics with.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { parse } from "yaml";
import { KSM_CONFIG, KSM_LABELS_ALLOWLIST } from "./controlplane/monitoring.ts";

it("ships the kube-state-metrics chart values with the tested config, RBAC and label allowlist", () => {
  const values = parse(
    readFileSync(
      fileURLToPath(new URL("../docs/kube-state-metrics-values.yaml", import.meta.url)),
      "utf8",
    ),
  );
  expect(values.customResourceState).toEqual({
    enabled: true,
    config: parse(readFileSync(KSM_CONFIG, "utf8")),
  });
  expect(values.rbac.extraRules).toContainEqual({
    apiGroups: ["nightshift.dev"],
    resources: ["backgroundtasks"],
    verbs: ["list", "watch"],
  });
  expect(values.metricLabelsAllowlist.join(",")).toBe(KSM_LABELS_ALLOWLIST);
});
