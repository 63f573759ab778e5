// What a handler gets: its params, the environment, a logger, and the
// signal that SIGTERM (deadline, eviction) trips so it stops taking new work.
import type { Logger } from "pino";
import { configError } from "./errors.ts";

export interface TaskContext {
  signal: AbortSignal;
  log: Logger;
  env: NodeJS.ProcessEnv;
}

/** True once SIGTERM arrived: finish the item in hand, take no new one. */
export function stopping(ctx: TaskContext): boolean {
  return ctx.signal.aborted;
}

export function requireEnv(ctx: TaskContext, name: string, purpose: string): string {
  const value = ctx.env[name];
  if (!value)
    throw configError(
      `${name} is not set; it must hold the ${purpose} (fill it from a Secret with spec.env or spec.envFrom)`,
    );
  return value;
}

export type Handler<P> = (params: P, ctx: TaskContext) => Promise<Record<string, unknown>>;
