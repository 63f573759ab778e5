// The operator's only path to the apiserver: JSON requests over one keep-alive
// HTTPS agent. The connection comes from kubeconfig.ts and the credentials
// from credentials.ts, fetched again before a request whenever they may have
// changed and at once after a 401. Watches are plain HTTP streams so they can
// ask for metadata-only objects (PartialObjectMetadata). Every request is
// counted so tests and benchmarks can prove "zero writes while idle"; writes
// pass a fence (the leader's lease) and rejected credentials are tracked for
// health checks.
import type { ClientRequest, ClientRequestArgs } from "node:http";
import { Agent, type RequestOptions, request } from "node:https";
import type { Duplex } from "node:stream";
import { CredentialSource, type Credentials } from "./credentials.ts";
import { type ClusterConnection, loadConnection } from "./kubeconfig.ts";
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

const WRITES: ReadonlySet<Verb> = new Set(["create", "update", "apply", "patch", "delete"]);

/** Rejections in a row (each after re-reading credentials) that make credentials count as rejected. */
const REJECTIONS_BEFORE_UNHEALTHY = 3;

/** Decides whether a write may be sent now: the leader's lease (leader-election.ts). */
export interface WriteFence {
  /** Milliseconds left in which writes may still reach the apiserver; ≤ 0 refuses them. */
  writableForMs(): number;
}

export class WriteRefused extends Error {
  constructor(what: string) {
    super(`${what}: not sent, this replica may no longer hold the lease`);
    this.name = "WriteRefused";
  }
}

export interface CallOptions {
  /** Gives up (and never sends) once performance.now() passes this. */
  deadline?: number;
}

export interface KubeClientOptions {
  credentials?: CredentialSource;
  /** Sent as User-Agent; the apiserver's audit log records it. */
  userAgent?: string;
  timeoutMs?: number;
}

/**
 * The https.Agent for one set of credentials against one server, with two departures from Node 24's:
 * - createConnection is not given the callback. Node's gives the TLS session listener it adds to
 *   every socket a closure context that also holds the callback, which leads to the socket's first
 *   request: each keep-alive socket kept that request's whole response body alive (a list page is
 *   megabytes). Without the callback, Agent.createSocket uses the returned socket itself. Only a
 *   proxy tunnel needs the callback, and this agent is given no proxy.
 * - getName leaves the TLS material out. Node's name for a connection pool spells out the CA,
 *   certificate and key, kilobytes of PEM built and hashed again for every request; this agent holds
 *   one set of credentials, so host, port and server name tell its pools apart.
 */
class KubeAgent extends Agent {
  override createConnection(options: ClientRequestArgs): Duplex | null | undefined {
    return super.createConnection(options);
  }

  override getName(options: RequestOptions = {}): string {
    return `${options.host ?? "localhost"}:${options.port ?? ""}:${options.servername ?? ""}`;
  }
}

export class KubeClient {
  readonly connection: ClusterConnection;
  private readonly credentials: CredentialSource;
  private agent: Agent;
  private agentCredentials?: Credentials;
  private readonly userAgent: string;
  private readonly timeoutMs: number;
  /** Set by the leader elector: writes outside the lease are refused before they are sent. */
  writeFence?: WriteFence;
  /** Requests sent, by verb; read by metrics, tests and benchmarks. */
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
  /** Answers 401/403 by code, and writes the fence refused (never sent). */
  readonly authFailures: Record<"401" | "403", number> = { "401": 0, "403": 0 };
  refusedWrites = 0;
  private rejectionStreak = 0;

  constructor(connection: ClusterConnection, options: KubeClientOptions = {}) {
    this.connection = connection;
    this.credentials = options.credentials ?? new CredentialSource(connection.auth);
    this.userAgent = options.userAgent ?? "nightshift-operator";
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.agent = this.makeAgent({});
  }

  static fromDefault(options: KubeClientOptions & { context?: string } = {}): KubeClient {
    return new KubeClient(loadConnection(process.env, { context: options.context }), options);
  }

  static fromKubeconfig(path: string, options: KubeClientOptions = {}): KubeClient {
    return new KubeClient(loadConnection({ KUBECONFIG: path }), options);
  }

  /** True while the apiserver keeps rejecting our credentials (401/403) with nothing accepted since. */
  get credentialsRejected(): boolean {
    return this.rejectionStreak >= REJECTIONS_BEFORE_UNHEALTHY;
  }

  private makeAgent(credentials: Credentials): Agent {
    return new KubeAgent({
      keepAlive: true,
      maxSockets: 64,
      ca: this.connection.ca,
      rejectUnauthorized: !this.connection.insecureSkipTlsVerify,
      servername: this.connection.tlsServerName,
      cert: credentials.cert,
      key: credentials.key,
    });
  }

  /** The agent for these credentials: a new certificate needs new TLS connections. */
  private agentFor(credentials: Credentials): Agent {
    const current = this.agentCredentials;
    if (current && (current.cert !== credentials.cert || current.key !== credentials.key)) {
      const old = this.agent;
      // Streams still open on the old agent end on their own; idle sockets go now.
      setTimeout(() => old.destroy(), 300_000).unref();
      this.agent = this.makeAgent(credentials);
    } else if (!current && credentials.cert) {
      this.agent = this.makeAgent(credentials);
    }
    this.agentCredentials = credentials;
    return this.agent;
  }

  private headers(credentials: Credentials, accept: string): Record<string, string> {
    const headers: Record<string, string> = { accept, "user-agent": this.userAgent };
    if (credentials.authorization) headers.authorization = credentials.authorization;
    const impersonate = this.connection.auth.impersonate;
    if (impersonate) {
      headers["impersonate-user"] = impersonate.user;
      if (impersonate.groups.length) headers["impersonate-group"] = impersonate.groups.join(",");
    }
    return headers;
  }

  private noteAnswer(status: number, credentials: Credentials): boolean {
    if (status === 401 || status === 403) {
      this.authFailures[status === 401 ? "401" : "403"]++;
      this.rejectionStreak++;
      return status === 401 && this.credentials.rejected(credentials);
    }
    if (status > 0) this.rejectionStreak = 0;
    return false;
  }

  /** Milliseconds a write may take, or a refusal; reads are bounded by the call's deadline only. */
  private budget(verb: Verb, what: string, options: CallOptions): number {
    let budget = this.timeoutMs;
    if (options.deadline !== undefined)
      budget = Math.min(budget, options.deadline - performance.now());
    if (WRITES.has(verb) && this.writeFence)
      budget = Math.min(budget, this.writeFence.writableForMs());
    if (budget <= 0) {
      if (WRITES.has(verb)) {
        this.refusedWrites++;
        throw new WriteRefused(what);
      }
      throw new Error(`${what}: deadline passed before sending`);
    }
    return budget;
  }

  async request<T>(
    verb: Verb,
    method: string,
    path: string,
    body?: unknown,
    contentType = "application/json",
    accept = "application/json",
    options: CallOptions = {},
  ): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const what = `${method} ${path}`;
    for (let attempt = 0; ; attempt++) {
      const credentials = await this.credentials.current();
      // Checked after the (possibly slow) credential refresh, right before sending.
      const budget = this.budget(verb, what, options);
      this.requestCounts[verb]++;
      const { status, text } = await this.send(verb, method, path, credentials, budget, {
        accept,
        payload,
        contentType,
      });
      const retry = this.noteAnswer(status, credentials);
      if (status >= 200 && status < 300) return (text ? JSON.parse(text) : undefined) as T;
      if (retry && attempt === 0) continue; // once, with the credentials just re-read
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
      throw new ApiError(status, reason, `${what}: ${status} ${message}`, message, causes);
    }
  }

  private send(
    verb: Verb,
    method: string,
    path: string,
    credentials: Credentials,
    budgetMs: number,
    body: { accept: string; payload?: string; contentType: string },
  ): Promise<{ status: number; text: string }> {
    const what = `${method} ${path}`;
    const headers = this.headers(credentials, body.accept);
    if (body.payload) {
      headers["content-type"] = body.contentType;
      headers["content-length"] = String(Buffer.byteLength(body.payload));
    }
    return new Promise((resolve, reject) => {
      const req = request(
        {
          agent: this.agentFor(credentials),
          hostname: this.connection.server.hostname,
          port: this.connection.server.port,
          method,
          path,
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
          });
          res.on("error", reject);
        },
      );
      const timer = setTimeout(
        () => req.destroy(new Error(`${what}: no answer within ${Math.round(budgetMs)} ms`)),
        budgetMs,
      );
      if (WRITES.has(verb)) this.fenceOnSocket(req, verb, what, reject);
      req.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      if (body.payload) req.write(body.payload);
      req.end();
    });
  }

  /** A write that waited for a free socket is checked again before its bytes leave. */
  private fenceOnSocket(
    req: ClientRequest,
    verb: Verb,
    what: string,
    reject: (e: Error) => void,
  ): void {
    req.once("socket", () => {
      if (this.writeFence && this.writeFence.writableForMs() <= 0) {
        this.refusedWrites++;
        this.requestCounts[verb]--; // counted when handed to the agent, but never sent
        const error = new WriteRefused(what);
        req.destroy(error);
        reject(error);
      }
    });
  }

  get<T>(path: string, options?: CallOptions): Promise<T> {
    return this.request<T>("get", "GET", path, undefined, undefined, undefined, options);
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

  create<T>(path: string, body: unknown, options?: CallOptions): Promise<T> {
    return this.request<T>("create", "POST", path, body, undefined, undefined, options);
  }

  update<T>(path: string, body: unknown, options?: CallOptions): Promise<T> {
    return this.request<T>("update", "PUT", path, body, undefined, undefined, options);
  }

  /**
   * Server-side apply under one field manager, taking ownership of conflicting fields. With
   * `accept` = METADATA_ACCEPT the answer is the object's metadata only.
   */
  apply<T>(path: string, body: unknown, fieldManager: string, accept?: string): Promise<T> {
    return this.request<T>(
      "apply",
      "PATCH",
      `${path}?fieldManager=${encodeURIComponent(fieldManager)}&force=true`,
      body,
      "application/apply-patch+yaml",
      accept,
    );
  }

  mergePatch<T>(path: string, body: unknown, accept?: string): Promise<T> {
    return this.request<T>("patch", "PATCH", path, body, "application/merge-patch+json", accept);
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
    const controller = new AbortController();
    let finished = false;
    const finish = (error: unknown) => {
      if (finished) return;
      finished = true;
      onDone(error);
    };
    const qs = new URLSearchParams({ ...query, watch: "true" }).toString();
    void this.credentials.current().then((credentials) => {
      if (controller.signal.aborted) return finish(undefined);
      this.requestCounts.watch++;
      const req = request(
        {
          agent: this.agentFor(credentials),
          hostname: this.connection.server.hostname,
          port: this.connection.server.port,
          method: "GET",
          path: `${path}?${qs}`,
          headers: this.headers(credentials, accept),
          signal: controller.signal,
        },
        (res) => {
          this.noteAnswer(res.statusCode ?? 0, credentials);
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

/** Accept headers asking for metadata only (PartialObjectMetadata): objects, lists and write answers. */
export const METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
export const METADATA_LIST_ACCEPT =
  "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

export function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 404;
}

export function isConflict(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 409;
}
