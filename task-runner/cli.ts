// The Nightshift task runner: `node task-runner/main.ts run <task-type>
// --params '<json>'`, or NIGHTSHIFT_TASK and NIGHTSHIFT_PARAMS in the
// environment (how the operator starts it). Exit codes follow errors.ts.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import pino from "pino";
import { catalogue, isTaskType, taskTypes, validateParams } from "../crds/catalogue/index.ts";
import type { TaskContext } from "./context.ts";
import { classify, EXIT, TaskError, usageError } from "./errors.ts";
import { handlers } from "./handlers/index.ts";
import { writeResult } from "./result.ts";
import { onStop } from "./stop-signal.ts";

const USAGE = `usage: node task-runner/main.ts run <task-type> [--params '<json>']
       node task-runner/main.ts list
task types: ${taskTypes.join(", ")}`;

const log = pino({ level: process.env.LOG_LEVEL ?? "info", base: { component: "task-runner" } });
// Kubernetes mounts /dev/termination-log; run by hand, the result is only logged.
const terminationPath =
  process.env.NIGHTSHIFT_TERMINATION_PATH ??
  (existsSync("/dev/termination-log") ? "/dev/termination-log" : undefined);
const stopGraceMs = Number(process.env.NIGHTSHIFT_STOP_GRACE_MS ?? 8000);

function finish(exitCode: number, result: Record<string, unknown>): never {
  if (terminationPath) writeResult(terminationPath, result);
  if (exitCode !== EXIT.ok)
    process.stderr.write(`nightshift-task-runner: ${String(result.error ?? "failed")}\n`);
  log.info({ exitCode, result }, "finished");
  process.exit(exitCode);
}

function parseInput(): { type: string; params: unknown } {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: { params: { type: "string" }, help: { type: "boolean" } },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const [command, typeArg] = positionals;
  if (command === "list") {
    for (const type of taskTypes) console.log(`${type.padEnd(32)} ${catalogue[type].description}`);
    process.exit(0);
  }
  if (command !== undefined && command !== "run")
    throw usageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
  const type = typeArg ?? process.env.NIGHTSHIFT_TASK;
  if (!type) throw usageError(`no task type given\n${USAGE}`);
  const rawParams = values.params ?? process.env.NIGHTSHIFT_PARAMS ?? "{}";
  let params: unknown;
  try {
    params = JSON.parse(rawParams);
  } catch (error) {
    throw usageError(
      `params are not valid JSON (${(error as Error).message}); pass an object such as --params '{"paths":["/tmp"]}'`,
    );
  }
  return { type, params };
}

const started = Date.now();
let type = "unknown";
let stopSignal: string | undefined;
try {
  const input = parseInput();
  type = input.type;
  if (!isTaskType(type))
    throw usageError(
      `unknown task type ${JSON.stringify(type)}; known types: ${taskTypes.join(", ")}`,
    );
  const checked = validateParams(type, input.params, "params");
  if (!checked.ok) throw usageError(`invalid params for ${type}: ${checked.problems.join("; ")}`);

  const abort = new AbortController();
  const onSignal = (signal: string) => {
    if (abort.signal.aborted) return;
    stopSignal = signal;
    log.warn({ signal }, "stop requested: finishing the item in hand");
    abort.abort();
    // Past the grace period, report what we know and leave.
    setTimeout(
      () =>
        finish(EXIT.tempFail, {
          task: type,
          outcome: "stopped",
          error: `${type} stopped by ${signal} before it finished`,
          durationMs: Date.now() - started,
        }),
      stopGraceMs,
    ).unref();
  };
  onStop(onSignal);

  const ctx: TaskContext = {
    signal: abort.signal,
    log: log.child({ task: type }),
    env: process.env,
  };
  const handler = handlers[type] as (
    params: unknown,
    ctx: TaskContext,
  ) => Promise<Record<string, unknown>>;
  const result = await handler(checked.value, ctx);
  const durationMs = Date.now() - started;
  if (abort.signal.aborted) {
    finish(EXIT.tempFail, {
      task: type,
      outcome: "stopped",
      ...result,
      durationMs,
      error: `${type} stopped early by ${stopSignal}; the rest is left for the next run`,
    });
  }
  finish(EXIT.ok, { task: type, outcome: "succeeded", ...result, durationMs });
} catch (error) {
  let failure = error instanceof TaskError ? error : classify(error, type);
  if (stopSignal && failure.exitCode !== EXIT.tempFail) {
    // Interrupted work is unfinished work, not a bug: the next run picks it up.
    failure = new TaskError(EXIT.tempFail, `${type} stopped by ${stopSignal}: ${failure.message}`);
  }
  finish(failure.exitCode, {
    task: type,
    outcome: "failed",
    exitCode: failure.exitCode,
    error: failure.message,
    durationMs: Date.now() - started,
  });
}
