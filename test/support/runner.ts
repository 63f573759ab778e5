// Runs the task runner CLI as a real process, the way the Job's container
// does, and collects its exit code, output and termination-message result.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../task-runner/main.ts", import.meta.url));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  result: Record<string, any>;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Send SIGTERM once stdout contains this text. */
  sigtermWhen?: string;
  /** Send SIGTERM once this settles (e.g. a peer saw the runner's request). */
  sigtermOn?: Promise<unknown>;
}

export async function runTask(
  type: string,
  params: unknown,
  options: RunOptions = {},
): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "nightshift-run-"));
  const terminationPath = join(dir, "termination-log");
  const child = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      process.execPath,
      MAIN,
      "run",
      type,
      "--params",
      JSON.stringify(params),
    ],
    {
      env: {
        PATH: process.env.PATH ?? "",
        NIGHTSHIFT_TERMINATION_PATH: terminationPath,
        LOG_LEVEL: "debug",
        ...options.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  let signalled = false;
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
    if (options.sigtermWhen && !signalled && stdout.includes(options.sigtermWhen)) {
      signalled = true;
      child.kill("SIGTERM");
    }
  });
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  options.sigtermOn?.then(() => child.kill("SIGTERM"));
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  let result: Record<string, any> = {};
  try {
    result = JSON.parse(readFileSync(terminationPath, "utf8"));
  } catch {}
  rmSync(dir, { recursive: true, force: true });
  return { code, stdout, stderr, result };
}
