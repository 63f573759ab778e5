// Where the operator's API connection comes from, resolved the way client-go
// does it: the KUBECONFIG files (merged, first definition wins, relative paths
// against the file that named them) or ~/.kube/config, a context chosen by name
// or current-context; else the in-cluster service account. Owned here instead
// of importing @kubernetes/client-node, whose config module alone costs ~80 MB
// RSS. This file only describes the connection; credentials.ts reads (and
// re-reads) the secrets it points at.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";

/** JSON is YAML too; the YAML parser (~10 MB RSS) is loaded only for a kubeconfig that needs it. */
function parseKubeconfig(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const yaml = createRequire(import.meta.url)("yaml") as typeof import("yaml");
    return yaml.parse(text);
  }
}

/** How to get credentials; files and commands are read by credentials.ts, again and again. */
export interface UserAuth {
  token?: string;
  tokenFile?: string;
  clientCertificate?: PemSource;
  clientKey?: PemSource;
  username?: string;
  password?: string;
  exec?: ExecConfig;
  impersonate?: { user: string; groups: string[] };
}

/** PEM text given inline (…-data) or as a file that may be rotated on disk. */
export type PemSource = { data: string } | { file: string };

export interface ExecConfig {
  command: string;
  args: string[];
  env: Array<{ name: string; value: string }>;
  apiVersion: string;
  provideClusterInfo: boolean;
  /** Cluster facts handed to the plugin in KUBERNETES_EXEC_INFO when provideClusterInfo is set. */
  cluster: Record<string, unknown>;
}

export interface ClusterConnection {
  server: URL;
  /** CA bundle (PEM); undefined trusts the system roots. */
  ca?: string;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
  auth: UserAuth;
  /** Where this came from, for logs. */
  source: string;
}

interface NamedEntry<T> {
  name: string;
  value: T;
  /** Folder of the file that defined it; relative paths resolve against it. */
  dir: string;
}

interface RawCluster {
  server?: string;
  "certificate-authority"?: string;
  "certificate-authority-data"?: string;
  "insecure-skip-tls-verify"?: boolean;
  "tls-server-name"?: string;
  "proxy-url"?: string;
  extensions?: Array<{ name: string; extension: unknown }>;
}

interface RawUser {
  token?: string;
  tokenFile?: string;
  "client-certificate"?: string;
  "client-certificate-data"?: string;
  "client-key"?: string;
  "client-key-data"?: string;
  username?: string;
  password?: string;
  as?: string;
  "as-groups"?: string[];
  exec?: {
    command: string;
    args?: string[];
    env?: Array<{ name: string; value: string }> | null;
    apiVersion: string;
    provideClusterInfo?: boolean;
    interactiveMode?: string;
  };
  "auth-provider"?: { name: string };
}

interface RawContext {
  cluster: string;
  user: string;
  namespace?: string;
}

/** Several kubeconfig files merged as client-go merges them. */
export interface MergedKubeconfig {
  currentContext?: string;
  clusters: Map<string, NamedEntry<RawCluster>>;
  users: Map<string, NamedEntry<RawUser>>;
  contexts: Map<string, NamedEntry<RawContext>>;
  files: string[];
}

export interface KubeconfigFile {
  path: string;
  text: string;
}

/** Merges parsed files: the first file to set current-context or to name an entry wins. */
export function mergeKubeconfigs(files: KubeconfigFile[]): MergedKubeconfig {
  const merged: MergedKubeconfig = {
    clusters: new Map(),
    users: new Map(),
    contexts: new Map(),
    files: files.map((f) => f.path),
  };
  for (const file of files) {
    const doc = (parseKubeconfig(file.text) ?? {}) as {
      "current-context"?: string;
      clusters?: Array<{ name: string; cluster: RawCluster }> | null;
      users?: Array<{ name: string; user: RawUser }> | null;
      contexts?: Array<{ name: string; context: RawContext }> | null;
    };
    const dir = dirname(resolve(file.path));
    if (!merged.currentContext && doc["current-context"])
      merged.currentContext = doc["current-context"];
    const add = <T>(map: Map<string, NamedEntry<T>>, name: string, value: T) => {
      if (!map.has(name)) map.set(name, { name, value: value ?? ({} as T), dir });
    };
    for (const c of doc.clusters ?? []) add(merged.clusters, c.name, c.cluster);
    for (const u of doc.users ?? []) add(merged.users, u.name, u.user);
    for (const c of doc.contexts ?? []) add(merged.contexts, c.name, c.context);
  }
  return merged;
}

function pathIn(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(dir, path);
}

function base64Text(data: string): string {
  return Buffer.from(data, "base64").toString("utf8");
}

/** The connection one context describes; throws naming what is missing or unsupported. */
export function resolveContext(merged: MergedKubeconfig, contextName?: string): ClusterConnection {
  const name = contextName || merged.currentContext;
  const where = merged.files.join(delimiter);
  if (!name) throw new Error(`kubeconfig ${where}: no current-context and no context given`);
  const context = merged.contexts.get(name);
  if (!context) throw new Error(`kubeconfig ${where}: context "${name}" not found`);
  const cluster = merged.clusters.get(context.value.cluster);
  if (!cluster?.value.server)
    throw new Error(`kubeconfig ${where}: cluster "${context.value.cluster}" has no server`);
  const user = merged.users.get(context.value.user);
  if (context.value.user && !user)
    throw new Error(`kubeconfig ${where}: user "${context.value.user}" not found`);
  const c = cluster.value;
  if (c["proxy-url"]) throw new Error(`kubeconfig ${where}: proxy-url is not supported`);
  const ca = c["certificate-authority-data"]
    ? base64Text(c["certificate-authority-data"])
    : c["certificate-authority"]
      ? readFileSync(pathIn(cluster.dir, c["certificate-authority"]), "utf8")
      : undefined;
  const connection: ClusterConnection = {
    server: new URL(c.server as string),
    ca,
    insecureSkipTlsVerify: c["insecure-skip-tls-verify"] === true,
    tlsServerName: c["tls-server-name"],
    auth: {},
    source: `kubeconfig ${where}, context ${name}`,
  };
  if (user) connection.auth = userAuth(user, connection, c, where);
  return connection;
}

function userAuth(
  entry: NamedEntry<RawUser>,
  connection: ClusterConnection,
  cluster: RawCluster,
  where: string,
): UserAuth {
  const u = entry.value;
  if (u["auth-provider"])
    throw new Error(
      `kubeconfig ${where}: auth-provider "${u["auth-provider"].name}" is not supported; use an exec credential plugin`,
    );
  const pem = (data?: string, file?: string): PemSource | undefined =>
    data ? { data: base64Text(data) } : file ? { file: pathIn(entry.dir, file) } : undefined;
  const auth: UserAuth = {
    token: u.token || undefined,
    tokenFile: u.tokenFile ? pathIn(entry.dir, u.tokenFile) : undefined,
    clientCertificate: pem(u["client-certificate-data"], u["client-certificate"]),
    clientKey: pem(u["client-key-data"], u["client-key"]),
    username: u.username || undefined,
    password: u.password || undefined,
  };
  if (u.as) auth.impersonate = { user: u.as, groups: u["as-groups"] ?? [] };
  if (u.exec) {
    if (u.exec.interactiveMode === "Always")
      throw new Error(
        `kubeconfig ${where}: exec plugin ${u.exec.command} needs a terminal (interactiveMode Always)`,
      );
    // As client-go: a command with a path separator is relative to the kubeconfig, a bare name is looked up on PATH.
    const command =
      u.exec.command.includes("/") && !isAbsolute(u.exec.command)
        ? join(entry.dir, u.exec.command)
        : u.exec.command;
    auth.exec = {
      command,
      args: u.exec.args ?? [],
      env: u.exec.env ?? [],
      apiVersion: u.exec.apiVersion,
      provideClusterInfo: u.exec.provideClusterInfo === true,
      cluster: {
        server: connection.server.toString().replace(/\/$/, ""),
        "tls-server-name": connection.tlsServerName,
        "insecure-skip-tls-verify": connection.insecureSkipTlsVerify,
        "certificate-authority-data": connection.ca
          ? Buffer.from(connection.ca).toString("base64")
          : undefined,
        config: cluster.extensions?.find((e) => e.name === "client.authentication.k8s.io/exec")
          ?.extension,
      },
    };
  }
  return auth;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The in-cluster connection: the service's address from the environment, the mounted token (re-read as the kubelet rotates it). */
export function inClusterConnection(
  env: NodeJS.ProcessEnv,
  dir = SERVICE_ACCOUNT_DIR,
): ClusterConnection | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !existsSync(join(dir, "token"))) return undefined;
  return {
    server: new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`),
    ca: readFileSync(join(dir, "ca.crt"), "utf8"),
    insecureSkipTlsVerify: false,
    auth: { tokenFile: join(dir, "token") },
    source: `in-cluster service account (${dir})`,
  };
}

/**
 * controller-runtime's order: KUBECONFIG, then the in-cluster service account,
 * then ~/.kube/config.
 */
export function loadConnection(
  env: NodeJS.ProcessEnv = process.env,
  options: { context?: string; serviceAccountDir?: string } = {},
): ClusterConnection {
  const fromFiles = (paths: string[]) =>
    resolveContext(
      mergeKubeconfigs(paths.map((path) => ({ path, text: readFileSync(path, "utf8") }))),
      options.context,
    );
  const listed = (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  if (listed.length) {
    const present = listed.filter((path) => existsSync(path));
    if (!present.length) throw new Error(`KUBECONFIG=${env.KUBECONFIG}: no such file`);
    return fromFiles(present);
  }
  const inCluster = inClusterConnection(env, options.serviceAccountDir);
  if (inCluster) return inCluster;
  const home = join(env.HOME ?? homedir(), ".kube", "config");
  if (existsSync(home)) return fromFiles([home]);
  throw new Error("no kubeconfig (KUBECONFIG, ~/.kube/config) and not running in a cluster");
}
