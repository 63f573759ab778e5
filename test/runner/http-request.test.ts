// http.request against real HTTP servers on loopback.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { runTask } from "../support/runner.ts";

describe("http.request", () => {
  let server: Server;
  let base: string;
  const received: Array<{ method?: string; url?: string; auth?: string; body: string }> = [];
  let slowRequestArrived: () => void = () => {};

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        received.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
        const status = Number(
          new URL(req.url ?? "/", "http://x").searchParams.get("status") ?? 200,
        );
        if (req.url?.startsWith("/slow")) slowRequestArrived();
        if (req.url?.startsWith("/slow")) setTimeout(() => res.writeHead(200).end("late"), 5000);
        else res.writeHead(status).end(`status ${status}`);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it("calls the URL with method, headers from env and body, and reports the status", async () => {
    const run = await runTask(
      "http.request",
      {
        url: `${base}/hook`,
        method: "POST",
        body: '{"ping":1}',
        headersFromEnv: { Authorization: "HOOK_TOKEN" },
      },
      { env: { HOOK_TOKEN: "Bearer s3cret" } },
    );
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({ task: "http.request", outcome: "succeeded", status: 200 });
    expect(received.at(-1)).toMatchObject({
      method: "POST",
      url: "/hook",
      auth: "Bearer s3cret",
      body: '{"ping":1}',
    });
  });

  it("is idempotent to run twice (the same request, the same result)", async () => {
    const first = await runTask("http.request", { url: `${base}/twice` });
    const second = await runTask("http.request", { url: `${base}/twice` });
    expect([first.code, second.code]).toEqual([0, 0]);
    expect(second.result.status).toBe(first.result.status);
  });

  it("treats 5xx and an unreachable host as retryable (75) and 4xx as not (65)", async () => {
    expect((await runTask("http.request", { url: `${base}/x?status=503` })).code).toBe(75);
    const [closed] = await freePorts(1);
    const down = await runTask("http.request", { url: `http://127.0.0.1:${closed}/` });
    expect(down.code).toBe(75);
    expect(down.stderr).toContain("ECONNREFUSED");
    const notFound = await runTask("http.request", { url: `${base}/x?status=404` });
    expect(notFound.code).toBe(65);
    expect(notFound.stderr).toContain("answered 404");
    expect(
      (await runTask("http.request", { url: `${base}/x?status=404`, expectedStatus: [404] })).code,
    ).toBe(0);
  });

  it("times out as retryable", async () => {
    const run = await runTask("http.request", { url: `${base}/slow`, timeout: "500ms" });
    expect(run.code).toBe(75);
    expect(run.stderr).toContain("timed out");
  });

  it("rejects bad params with exit 64 naming the field", async () => {
    const run = await runTask("http.request", { url: "ftp://example.com", method: "BREW" });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain("params.url");
    expect(run.stderr).toContain("params.method");
  });

  it("stops on SIGTERM mid-request and reports it as retryable", async () => {
    // SIGTERM once the request is in flight, whatever the machine's load.
    const arrived = new Promise<void>((resolve) => {
      slowRequestArrived = resolve;
    });
    const run = await runTask(
      "http.request",
      { url: `${base}/slow`, timeout: "30s" },
      { sigtermOn: arrived },
    );
    expect(run.code).toBe(75);
    expect(run.result.outcome).toBe("failed");
  });
});
