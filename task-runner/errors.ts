// The runner's exit-code contract (sysexits.h), shared with the operator's
// podFailurePolicy: 75 is retried, 64/65/78 fail the run at once.
export const EXIT = {
  ok: 0,
  usage: 64, // EX_USAGE: bad params or arguments
  dataErr: 65, // EX_DATAERR: the data the task read is wrong
  tempFail: 75, // EX_TEMPFAIL: a dependency is down or slow; retrying may help
  config: 78, // EX_CONFIG: missing or wrong configuration (env, credentials)
  software: 70, // EX_SOFTWARE: a bug in the runner
} as const;

/** A failure with an exit code and one line telling the user what failed and what to fix. */
export class TaskError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

export const usageError = (message: string) => new TaskError(EXIT.usage, message);
export const dataError = (message: string) => new TaskError(EXIT.dataErr, message);
export const retryable = (message: string) => new TaskError(EXIT.tempFail, message);
export const configError = (message: string) => new TaskError(EXIT.config, message);

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ESOCKET",
  "ECONNECTION",
  "ETIMEOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

/**
 * Maps any error to the contract: network trouble and timeouts are
 * retryable, authentication and missing objects are configuration, the rest
 * is a bug. PostgreSQL SQLSTATE classes are read where present.
 */
export function classify(error: unknown, what: string): TaskError {
  if (error instanceof TaskError) return error;
  const e = error as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = e?.code ?? e?.cause?.code;
  const message = e?.message ?? String(error);
  if (e?.name === "AbortError" || e?.name === "TimeoutError")
    return retryable(`${what}: timed out (${message})`);
  if (code && NETWORK_CODES.has(code))
    return retryable(`${what}: cannot reach it (${code}); check it is up, the run will be retried`);
  if (code && /^[0-9A-Z]{5}$/.test(code)) {
    if (
      code.startsWith("08") ||
      code === "57P01" ||
      code === "57P03" ||
      code === "53300" ||
      code.startsWith("40")
    ) {
      return retryable(`${what}: ${message} (SQLSTATE ${code}); the run will be retried`);
    }
    if (code.startsWith("28") || code === "3D000")
      return configError(`${what}: ${message} (SQLSTATE ${code}); check DATABASE_URL`);
    if (code === "42P01" || code === "42703")
      return configError(
        `${what}: ${message} (SQLSTATE ${code}); create the table (see task-runner/schema.sql)`,
      );
    if (code.startsWith("22") || code.startsWith("23"))
      return dataError(`${what}: ${message} (SQLSTATE ${code})`);
    if (code.startsWith("42"))
      return usageError(`${what}: ${message} (SQLSTATE ${code}); check the task's params`);
  }
  if (/EAUTH|Invalid login|authentication/i.test(`${code} ${message}`))
    return configError(`${what}: authentication failed (${message}); check the credentials`);
  return new TaskError(EXIT.software, `${what}: ${message}`);
}
