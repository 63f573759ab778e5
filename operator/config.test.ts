import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.ts";

describe("operator configuration", () => {
  it("takes flags over environment over defaults", () => {
    const config = loadConfig(["--workers=8", "--namespaces=a, b"], {
      NIGHTSHIFT_WORKERS: "2",
      NIGHTSHIFT_LEADER_ELECT: "false",
    });
    expect(config.workers).toBe(8);
    expect(config.namespaces).toEqual(["a", "b"]);
    expect(config.leaderElect).toBe(false);
    expect(config.metricsAddress).toBe(":8080");
    expect(config.allowedImagePrefixes).toEqual([]);
    expect(
      loadConfig([], {
        NIGHTSHIFT_ALLOWED_IMAGE_PREFIXES: "registry.example/batch/, ghcr.io/acme/",
      }).allowedImagePrefixes,
    ).toEqual(["registry.example/batch/", "ghcr.io/acme/"]);
  });

  it("names the flag and variable of every bad setting", () => {
    expect(() => loadConfig(["--workers=0", "--priority-classes=urgent=x"], {})).toThrow(
      /--workers \/ NIGHTSHIFT_WORKERS: .*\n--priority-classes \/ NIGHTSHIFT_PRIORITY_CLASSES: expected priority=PriorityClass pairs/s,
    );
    expect(() => loadConfig(["--no-such-flag=1"], {})).toThrow("no-such-flag");
  });
});
