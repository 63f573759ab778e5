// http.request: call a URL; 5xx, 429 and timeouts are retryable, other 4xx are not.
import type { z } from "zod";
import type { httpRequestParams } from "../../crds/catalogue/http.ts";
import { parseDuration } from "../../crds/duration.ts";
import { requireEnv, type TaskContext } from "../context.ts";
import { classify, configError, dataError, retryable } from "../errors.ts";

type Params = z.output<typeof httpRequestParams>;

export async function httpRequest(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = {
    "user-agent": "nightshift-task-runner",
    ...(params.headers ?? {}),
  };
  for (const [header, variable] of Object.entries(params.headersFromEnv ?? {}))
    headers[header] = requireEnv(ctx, variable, `value of the ${header} header`);
  const started = Date.now();
  let response: Response;
  try {
    response = await fetch(params.url, {
      method: params.method,
      headers,
      body: params.body,
      redirect: "follow",
      signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(parseDuration(params.timeout))]),
    });
  } catch (error) {
    throw classify(error, `${params.method} ${params.url}`);
  }
  const body = await response.text().catch(() => "");
  const durationMs = Date.now() - started;
  const ok = params.expectedStatus
    ? params.expectedStatus.includes(response.status)
    : response.status >= 200 && response.status < 300;
  if (ok) return { status: response.status, durationMs, bytes: Buffer.byteLength(body) };
  const summary = `${params.method} ${params.url} answered ${response.status}${body ? `: ${body.slice(0, 200)}` : ""}`;
  if (response.status >= 500 || response.status === 429 || response.status === 408)
    throw retryable(`${summary}; the run will be retried`);
  if (response.status === 401 || response.status === 403)
    throw configError(`${summary}; check the credentials in headersFromEnv`);
  throw dataError(`${summary}; expected ${params.expectedStatus?.join(", ") ?? "a 2xx status"}`);
}
