// The operator's only path to the apiserver: JSON requests over one keep-alive
// HTTPS agent, authenticated from a kubeconfig (or in-cluster) by
// @kubernetes/client-node. Watches are plain HTTP streams so they can ask for
// metadata-only objects (PartialObjectMetadata). Every request is
// counted so tests and benchmarks can prove "zero writes while idle".
import { Agent, type RequestOptions, request } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: Array<{
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
    }>;
    managedFields?: unknown;
    deletionTimestamp?: string;
    creationTimestamp?: string;
    finalizers?: string[];
  };
  [key: string]: unknown;
}

export interface KubeList<T> {
  metadata: { resourceVersion: string; continue?: string };
  items: T[];
}

/** The `details.causes` of a Kubernetes Status: which field was refused and why. */
export interface StatusCause {
  field?: string;
  message?: string;
  reason?: string;
}

export class ApiError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  /** The apiserver's own message, without the request line. */
  readonly statusMessage: string;
  readonly causes: StatusCause[];

  constructor(
    statusCode: number,
    reason: string,
    message: string,
    statusMessage = message,
    causes: StatusCause[] = [],
  ) {
    super(message);
    this.statusCode = statusCode;
    this.reason = reason;
    this.statusMessage = statusMessage;
    this.causes = causes;
  }
}

export type Verb = "get" | "list" | "watch" | "create" | "update" | "apply" | "patch" | "delete";

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private readonly server: URL;
  private tlsOptions?: RequestOptions;
  /** Requests made, by verb; read by metrics, tests and benchmarks. */
  readonly requestCounts: Record<Verb, number> = {
    get: 0,
    list: 0,
    watch: 0,
    create: 0,
    update: 0,
    apply: 0,
    patch: 0,
    delete: 0,
  };

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    this.server = new URL(cluster.server);
  }

  static fromDefault(): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return new KubeClient(kc);
  }

  async request<T>(
    verb: Verb,
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
    accept = "application/json",
  ): Promise<T> {
    this.requestCounts[verb]++;
    await this.ensureTls();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          ...this.tlsOptions,
          agent: this.agent,
          hostname: this.server.hostname,
          port: this.server.port,
          method,
          path,
          headers: {
            ...(this.tlsOptions?.headers ?? {}),
            accept,
            ...(payload
              ? { "content-type": contentType, "content-length": Buffer.byteLength(payload) }
              : {}),
          },
          timeout: 60_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              resolve((text ? JSON.parse(text) : undefined) as T);
              return;
            }
            let reason = "Unknown";
            let message = text;
            let causes: StatusCause[] = [];
            try {
              const parsed = JSON.parse(text) as {
                reason?: string;
                message?: string;
                details?: { causes?: StatusCause[] };
              };
              reason = parsed.reason ?? reason;
              message = parsed.message ?? message;
              causes = parsed.details?.causes ?? [];
            } catch {}
            reject(
              new ApiError(
                status,
                reason,
                `${method} ${path}: ${status} ${message}`,
                message,
                causes,
              ),
            );
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on("error", reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  private async ensureTls(): Promise<void> {
    if (this.tlsOptions) return;
    const options: RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(options);
    this.tlsOptions = options;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("get", "GET", path);
  }

  list<T>(path: string, query: Record<string, string> = {}, accept?: string): Promise<KubeList<T>> {
    const qs = new URLSearchParams(query).toString();
    return this.request<KubeList<T>>(
      "list",
      "GET",
      qs ? `${path}?${qs}` : path,
      undefined,
      undefined,
      accept,
    );
  }

  create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("create", "POST", path, body);
  }

  update<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("update", "PUT", path, body);
  }

  /** Server-side apply under one field manager, taking ownership of conflicting fields. */
  apply<T>(path: string, body: unknown, fieldManager: string): Promise<T> {
    return this.request<T>(
      "apply",
      "PATCH",
      `${path}?fieldManager=${encodeURIComponent(fieldManager)}&force=true`,
      body,
      "application/apply-patch+yaml",
    );
  }

  mergePatch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("patch", "PATCH", path, body, "application/merge-patch+json");
  }

  delete(path: string, body?: unknown): Promise<unknown> {
    return this.request("delete", "DELETE", path, body);
  }

  /**
   * Starts a watch stream. Events go to onEvent; onDone is called exactly once
   * when the stream ends for any reason (server close, error, abort).
   */
  watch(
    path: string,
    query: Record<string, string>,
    onEvent: (type: string, object: KubeObject) => void,
    onDone: (error: unknown) => void,
    accept = "application/json",
  ): AbortController {
    this.requestCounts.watch++;
    const controller = new AbortController();
    let finished = false;
    const finish = (error: unknown) => {
      if (finished) return;
      finished = true;
      onDone(error);
    };
    const qs = new URLSearchParams({ ...query, watch: "true" }).toString();
    void this.ensureTls().then(() => {
      const req = request(
        {
          ...this.tlsOptions,
          agent: this.agent,
          hostname: this.server.hostname,
          port: this.server.port,
          method: "GET",
          path: `${path}?${qs}`,
          headers: { ...(this.tlsOptions?.headers ?? {}), accept },
          signal: controller.signal,
        },
        (res) => {
          if (res.statusCode !== 200) {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              finish(
                new ApiError(
                  res.statusCode ?? 0,
                  "WatchFailed",
                  Buffer.concat(chunks).toString("utf8"),
                ),
              ),
            );
            return;
          }
          let buffer = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffer += chunk;
            let newline = buffer.indexOf("\n");
            while (newline >= 0) {
              const line = buffer.slice(0, newline);
              buffer = buffer.slice(newline + 1);
              if (line.trim()) {
                const event = JSON.parse(line) as { type: string; object: KubeObject };
                onEvent(event.type, event.object);
              }
              newline = buffer.indexOf("\n");
            }
          });
          res.on("end", () => finish(undefined));
          res.on("error", finish);
          res.on("close", () => finish(undefined));
        },
      );
      req.on("error", finish);
      req.end();
    }, finish);
    return controller;
  }

  close(): void {
    this.agent.destroy();
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 404;
}

export function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 409;
}
