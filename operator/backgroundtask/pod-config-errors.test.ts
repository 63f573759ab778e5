import { describe, expect, it } from "vitest";
import { missingReferenceIn, missingReferencesOf } from "./pod-config-errors.ts";

const waiting = (reason: string, message: string) => ({
  status: { containerStatuses: [{ state: { waiting: { reason, message } } }] },
});

describe("missing references from CreateContainerConfigError", () => {
  it("reads the kubelet's messages for Secrets and ConfigMaps", () => {
    expect(missingReferenceIn('secret "db-credentials" not found')).toEqual({
      kind: "Secret",
      name: "db-credentials",
    });
    expect(missingReferenceIn('configmap "settings" not found')).toEqual({
      kind: "ConfigMap",
      name: "settings",
    });
    expect(missingReferenceIn('secrets "api" not found')).toEqual({ kind: "Secret", name: "api" });
    expect(missingReferenceIn("couldn't find key PASSWORD in Secret ns/db")).toBeUndefined();
  });

  it("looks only at containers waiting with CreateContainerConfigError", () => {
    expect(
      missingReferencesOf(waiting("CreateContainerConfigError", 'secret "db" not found')),
    ).toEqual(["Secret/db"]);
    expect(missingReferencesOf(waiting("ErrImagePull", 'secret "db" not found'))).toEqual([]);
    expect(missingReferencesOf({ status: {} })).toEqual([]);
  });
});
