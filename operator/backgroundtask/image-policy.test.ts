import { describe, expect, it } from "vitest";
import { imageAllowed } from "./image-policy.ts";

const RUNNER = "ghcr.io/nightshift-dev/task-runner:0.1.0";

describe("custom task image policy", () => {
  it("allows only the runner image when no prefixes are set", () => {
    expect(imageAllowed(RUNNER, RUNNER, [])).toBe(true);
    expect(imageAllowed("busybox:1.36", RUNNER, [])).toBe(false);
    expect(imageAllowed("ghcr.io/nightshift-dev/task-runner:0.2.0", RUNNER, [])).toBe(false);
  });

  it("allows images under a prefix, at a path, tag or digest boundary only", () => {
    const prefixes = ["registry.example/batch", "docker.io/library/busybox:"];
    expect(imageAllowed("registry.example/batch/report:1", RUNNER, prefixes)).toBe(true);
    expect(imageAllowed("registry.example/batch:2", RUNNER, prefixes)).toBe(true);
    expect(imageAllowed("registry.example/batch", RUNNER, prefixes)).toBe(true);
    expect(imageAllowed("registry.example/batch-evil/x:1", RUNNER, prefixes)).toBe(false);
    expect(imageAllowed("docker.io/library/busybox:1.36", RUNNER, prefixes)).toBe(true);
    expect(imageAllowed("docker.io/library/busybox-evil", RUNNER, prefixes)).toBe(false);
    expect(imageAllowed("busybox:1.36", RUNNER, prefixes)).toBe(false);
  });
});
