// Parameters of http.request: call a webhook or URL.
import { z } from "zod";
import { duration } from "../duration.ts";
import { httpUrl } from "./fields.ts";

export const httpRequestParams = z
  .object({
    url: httpUrl("URL to call."),
    method: z
      .enum(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
      .default("GET")
      .describe("HTTP method."),
    headers: z
      .record(z.string(), z.string())
      .optional()
      .describe("Request headers. Secret values belong in headersFromEnv."),
    headersFromEnv: z
      .record(
        z.string(),
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name"),
      )
      .optional()
      .describe(
        "Headers whose values come from environment variables (filled from Secrets), e.g. Authorization: API_TOKEN.",
      ),
    body: z.string().max(65536).optional().describe("Request body."),
    expectedStatus: z
      .array(z.int().min(100).max(599))
      .min(1)
      .max(50)
      .optional()
      .describe("Status codes that mean success (default: any 2xx)."),
    timeout: duration("Time allowed for the whole request.").default("30s"),
  })
  .strict();
