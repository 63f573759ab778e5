// /healthz, /readyz and /metrics on one port.
import type { Server } from "node:http";
import type { Registry } from "prom-client";

export interface HealthChecks {
  healthy: () => boolean;
  ready: () => boolean;
}

export function startHealthServer(
  address: string,
  registry: Registry,
  checks: HealthChecks,
): Promise<Server> {
  const [host, portText] = address.includes(":")
    ? [address.slice(0, address.lastIndexOf(":")), address.slice(address.lastIndexOf(":") + 1)]
    : ["", address];
  // Not `import from "node:http"`: its ES module face reads http.WebSocket and friends, which loads
  // undici and http2 (~5 MB) that this server never uses.
  const { createServer } = process.getBuiltinModule("node:http");
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz" || path === "/livez") {
      const ok = checks.healthy();
      res.writeHead(ok ? 200 : 500, { "content-type": "text/plain" }).end(ok ? "ok" : "unhealthy");
    } else if (path === "/readyz") {
      const ok = checks.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok" : "not ready");
    } else if (path === "/metrics") {
      registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
        (error: unknown) => res.writeHead(500).end(String(error)),
      );
    } else {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(portText), host || undefined, () => resolve(server));
  });
}
