// The credentials the operator presents, kept fresh as client-go keeps them:
// token files (a projected service-account token the kubelet rotates) are
// re-read every minute, client certificate files likewise, exec credential
// plugins run again when what they issued expires; and whenever the apiserver
// answers 401 everything is re-read before the next request.
import { readFile } from "node:fs/promises";
import type { ExecConfig, PemSource, UserAuth } from "./kubeconfig.ts";

export interface Credentials {
  /** Value of the Authorization header, if any. */
  authorization?: string;
  /** Client certificate and key (PEM), if any. */
  cert?: string;
  key?: string;
}

/** client-go re-reads token files once a minute (transport.NewCachedFileTokenSource). */
export const FILE_REREAD_MS = 60_000;

export interface ExecCredential {
  token?: string;
  cert?: string;
  key?: string;
  /** Epoch ms; undefined: valid until rejected. */
  expiresAt?: number;
}

/** Reads an exec plugin's ExecCredential output, checking what client-go checks. */
export function parseExecCredential(stdout: string, apiVersion: string): ExecCredential {
  let parsed: {
    apiVersion?: string;
    kind?: string;
    status?: {
      token?: string;
      clientCertificateData?: string;
      clientKeyData?: string;
      expirationTimestamp?: string;
    };
  };
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new Error("exec plugin printed no ExecCredential JSON");
  }
  if (parsed.kind !== "ExecCredential")
    throw new Error(`exec plugin printed kind ${parsed.kind}, want ExecCredential`);
  if (parsed.apiVersion !== apiVersion)
    throw new Error(`exec plugin answered ${parsed.apiVersion}, the kubeconfig asks ${apiVersion}`);
  const status = parsed.status;
  if (!status) throw new Error("exec plugin's ExecCredential has no status");
  if (Boolean(status.clientCertificateData) !== Boolean(status.clientKeyData))
    throw new Error(
      "exec plugin's ExecCredential has a certificate without key or a key without certificate",
    );
  if (!status.token && !(status.clientCertificateData && status.clientKeyData))
    throw new Error(
      "exec plugin's ExecCredential has neither token nor client certificate and key",
    );
  const expiresAt = status.expirationTimestamp ? Date.parse(status.expirationTimestamp) : undefined;
  if (expiresAt !== undefined && Number.isNaN(expiresAt))
    throw new Error(
      `exec plugin's expirationTimestamp ${status.expirationTimestamp} is not a time`,
    );
  return {
    token: status.token,
    cert: status.clientCertificateData,
    key: status.clientKeyData,
    expiresAt,
  };
}

/** Whether a cached value must be fetched again before use. */
export function isStale(
  cached: { readAt: number; expiresAt?: number } | undefined,
  now: number,
  rereadMs: number | undefined,
): boolean {
  if (!cached) return true;
  if (cached.expiresAt !== undefined && now >= cached.expiresAt) return true;
  return rereadMs !== undefined && now - cached.readAt >= rereadMs;
}

export type ExecRunner = (config: ExecConfig) => Promise<string>;

const runExecPlugin: ExecRunner = (config) => {
  const info = {
    apiVersion: config.apiVersion,
    kind: "ExecCredential",
    spec: { interactive: false, ...(config.provideClusterInfo ? { cluster: config.cluster } : {}) },
  };
  const env: NodeJS.ProcessEnv = { ...process.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) };
  for (const { name, value } of config.env) env[name] = value;
  // Loaded on first use: child_process brings dgram, net and readline, which most operators never need.
  const { execFile } = process.getBuiltinModule("node:child_process");
  return new Promise((resolve, reject) =>
    execFile(
      config.command,
      config.args,
      { env, timeout: 60_000, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        if (error)
          reject(
            new Error(`exec plugin ${config.command} failed: ${error.message} ${stderr}`.trim()),
          );
        else resolve(stdout);
      },
    ),
  );
};

interface Cached<T> {
  value: T;
  readAt: number;
  expiresAt?: number;
}

export interface CredentialOptions {
  now?: () => number;
  runExec?: ExecRunner;
  rereadMs?: number;
}

export class CredentialSource {
  private token?: Cached<string>;
  private certPair?: Cached<{ cert: string; key: string }>;
  private exec?: Cached<ExecCredential>;
  private refreshing?: Promise<Credentials>;
  /** True until the first refresh: static credentials are computed once, then kept. */
  private forceRefresh = true;
  private last: Credentials = {};

  private readonly auth: UserAuth;
  private readonly now: () => number;
  private readonly runExec: ExecRunner;
  private readonly rereadMs: number;

  constructor(auth: UserAuth, options: CredentialOptions = {}) {
    this.auth = auth;
    this.now = options.now ?? Date.now;
    this.runExec = options.runExec ?? runExecPlugin;
    this.rereadMs = options.rereadMs ?? FILE_REREAD_MS;
  }

  /** Credentials to use now, fetched again first if anything they come from may have changed. */
  current(): Promise<Credentials> {
    if (!this.needsRefresh()) return Promise.resolve(this.last);
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /**
   * The apiserver answered 401 to `used`: drop what was cached so the next
   * call re-reads. Returns false when the credentials have no source that
   * could have changed (static token or inline certificate).
   */
  rejected(used: Credentials): boolean {
    if (used !== this.last) return true; // already refreshed since these were handed out
    this.forceRefresh = true;
    return Boolean(
      this.auth.tokenFile ||
        this.auth.exec ||
        (this.auth.clientCertificate && "file" in this.auth.clientCertificate),
    );
  }

  private needsRefresh(): boolean {
    if (this.forceRefresh) return true;
    const now = this.now();
    const a = this.auth;
    if (a.tokenFile && isStale(this.token, now, this.rereadMs)) return true;
    if (a.clientCertificate && isStale(this.certPair, now, this.rereadMs)) return true;
    if (a.exec && isStale(this.exec, now, undefined)) return true;
    return false;
  }

  private async refresh(): Promise<Credentials> {
    const force = this.forceRefresh;
    this.forceRefresh = false;
    const now = this.now();
    const a = this.auth;
    if (a.tokenFile && (force || isStale(this.token, now, this.rereadMs))) {
      try {
        const text = (await readFile(a.tokenFile, "utf8")).trim();
        if (text) this.token = { value: text, readAt: now };
      } catch (error) {
        // As client-go: the last value read stays in use while the file is unreadable.
        if (!this.token) throw error;
        this.token.readAt = now;
      }
    }
    if (a.clientCertificate && (force || isStale(this.certPair, now, this.rereadMs))) {
      const [cert, key] = await Promise.all([readPem(a.clientCertificate), readPem(a.clientKey)]);
      if (cert && key) this.certPair = { value: { cert, key }, readAt: now };
    }
    if (a.exec && (force || isStale(this.exec, now, undefined))) {
      const credential = parseExecCredential(await this.runExec(a.exec), a.exec.apiVersion);
      this.exec = { value: credential, readAt: now, expiresAt: credential.expiresAt };
    }
    const next: Credentials = {};
    const token = this.exec?.value.token ?? this.token?.value ?? a.token;
    if (token) next.authorization = `Bearer ${token}`;
    else if (a.username !== undefined && a.password !== undefined)
      next.authorization = `Basic ${Buffer.from(`${a.username}:${a.password}`).toString("base64")}`;
    const pair = this.exec?.value.cert
      ? { cert: this.exec.value.cert, key: this.exec.value.key as string }
      : this.certPair?.value;
    if (pair) {
      next.cert = pair.cert;
      next.key = pair.key;
    }
    const changed =
      next.authorization !== this.last.authorization ||
      next.cert !== this.last.cert ||
      next.key !== this.last.key;
    if (changed) this.last = next;
    return this.last;
  }
}

async function readPem(source: PemSource | undefined): Promise<string | undefined> {
  if (!source) return undefined;
  return "data" in source ? source.data : readFile(source.file, "utf8");
}
