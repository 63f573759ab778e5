// The runner's command line and exit-code contract.
import { describe, expect, it } from "vitest";
import { runTask } from "../support/runner.ts";

describe("task runner CLI", () => {
  it("rejects an unknown task type with exit 64 and lists the known ones", async () => {
    const run = await runTask("email.carrier-pigeon", {});
    expect(run.code).toBe(64);
    expect(run.stderr).toContain('unknown task type "email.carrier-pigeon"');
    expect(run.stderr).toContain("files.cleanup-temp");
    expect(run.result).toMatchObject({ outcome: "failed", exitCode: 64 });
  });

  it("rejects params that fail the task's schema with exit 64, naming the field", async () => {
    const run = await runTask("files.cleanup-temp", { paths: ["relative"], olderThan: "soon" });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain("params.paths[0]: must be an absolute path");
    expect(run.stderr).toContain("params.olderThan: must be a duration");
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("fails with exit 78 and names the variable when configuration is missing", async () => {
    const run = await runTask("maintenance.cleanup-sessions", {});
    expect(run.code).toBe(78);
    expect(run.stderr).toContain("DATABASE_URL is not set");
  });

  it("takes the task and params from the environment, as the operator passes them", async () => {
    const { spawnSync } = await import("node:child_process");
    const out = spawnSync(
      process.execPath,
      [new URL("../../task-runner/main.ts", import.meta.url).pathname],
      {
        env: {
          PATH: process.env.PATH ?? "",
          NIGHTSHIFT_TASK: "files.cleanup-temp",
          NIGHTSHIFT_PARAMS: '{"paths":["/nonexistent-root"],"olderThan":"1h"}',
          NIGHTSHIFT_TERMINATION_PATH: "/dev/null",
        },
        encoding: "utf8",
      },
    );
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('"skippedRoots":["/nonexistent-root"]');
  });

  it("lists the catalogue", async () => {
    const { spawnSync } = await import("node:child_process");
    const out = spawnSync(
      process.execPath,
      [new URL("../../task-runner/main.ts", import.meta.url).pathname, "list"],
      { encoding: "utf8" },
    );
    expect(out.status).toBe(0);
    expect(out.stdout.trim().split("\n")).toHaveLength(10);
  });
});
