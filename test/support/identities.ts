// Identities other than the harness's admin, for tests about credentials:
// kubeconfigs with client certificates signed by the control plane's CA,
// service-account tokens bound to a Secret (deleting the Secret revokes the
// token), and the operator's RBAC for them.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { inject } from "vitest";
import { KubeClient } from "../../operator/runtime/kube-client.ts";

export function adminClient(): KubeClient {
  return KubeClient.fromKubeconfig(inject("kubeconfigPath"));
}

export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

function pkiDir(): string {
  return dirname(inject("kubeconfigPath"));
}

export function apiServer(): string {
  return adminClient().connection.server.toString().replace(/\/$/, "");
}

export function caFile(): string {
  return join(pkiDir(), "ca.crt");
}

/** A client certificate and key (PEM files) for user `name` in `groups`, signed by the cluster CA. */
export function clientCertificate(
  dir: string,
  name: string,
  groups: string[],
): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const subject = `${groups.map((g) => `/O=${g}`).join("")}/CN=${name}`;
  const openssl = (args: string[]) =>
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
  openssl(["req", "-new", "-key", key, "-subj", subject, "-out", csr]);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile(),
    "-CAkey",
    join(pkiDir(), "ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-out",
    cert,
  ]);
  return { cert, key };
}

/** Writes a one-context kubeconfig for the local control plane with the given user entry. */
export function writeKubeconfig(
  dir: string,
  user: Record<string, unknown>,
  file = `kubeconfig-${randomBytes(3).toString("hex")}`,
): string {
  const path = join(dir, file);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "local", cluster: { server: apiServer(), "certificate-authority": caFile() } },
      ],
      users: [{ name: "user", user }],
      contexts: [{ name: "local", context: { cluster: "local", user: "user" } }],
      "current-context": "local",
    }),
  );
  return path;
}

export function base64File(path: string): string {
  return readFileSync(path).toString("base64");
}

/** Binds cluster-admin to a user, group or service account (tests only). */
export async function grantClusterAdmin(
  subject:
    | { kind: "User" | "Group"; name: string }
    | { kind: "ServiceAccount"; name: string; namespace: string },
): Promise<void> {
  const admin = adminClient();
  await admin
    .create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
      metadata: {
        name: `test-${subject.kind}-${"namespace" in subject ? `${subject.namespace}-` : ""}${subject.name}`
          .toLowerCase()
          .replace(/[^a-z0-9.-]/g, "-"),
      },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "cluster-admin",
      },
      subjects: [
        subject.kind === "ServiceAccount"
          ? subject
          : { apiGroup: "rbac.authorization.k8s.io", kind: subject.kind, name: subject.name },
      ],
    })
    .catch((error: { statusCode?: number }) => {
      if (error.statusCode !== 409) throw error;
    });
  admin.close();
}

/** A service account with cluster-admin, whose tokens can be revoked one by one. */
export class RevocableServiceAccount {
  readonly namespace: string;
  readonly name: string;
  private readonly admin = adminClient();

  constructor(namespace: string, name: string) {
    this.namespace = namespace;
    this.name = name;
  }

  async create(): Promise<void> {
    await this.admin.create(`/api/v1/namespaces/${this.namespace}/serviceaccounts`, {
      metadata: { name: this.name },
    });
    await grantClusterAdmin({ kind: "ServiceAccount", name: this.name, namespace: this.namespace });
  }

  /** A fresh token, valid until `revoke(token)` deletes the Secret it is bound to. */
  async token(): Promise<string> {
    const secret = await this.admin.create<{ metadata: { name: string; uid: string } }>(
      `/api/v1/namespaces/${this.namespace}/secrets`,
      { metadata: { generateName: `${this.name}-binding-` } },
    );
    const request = await this.admin.create<{ status: { token: string } }>(
      `/api/v1/namespaces/${this.namespace}/serviceaccounts/${this.name}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: {
          expirationSeconds: 3600,
          boundObjectRef: {
            apiVersion: "v1",
            kind: "Secret",
            name: secret.metadata.name,
            uid: secret.metadata.uid,
          },
        },
      },
    );
    this.bindings.set(request.status.token, secret.metadata.name);
    return request.status.token;
  }

  private readonly bindings = new Map<string, string>();

  /** Deletes the token's Secret and waits until the apiserver rejects the token (its auth cache may hold it ~10 s). */
  async revoke(token: string): Promise<void> {
    await this.admin.delete(
      `/api/v1/namespaces/${this.namespace}/secrets/${this.bindings.get(token)}`,
    );
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const status = await tokenStatus(token);
      if (status === 401) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error("token still accepted 60 s after its Secret was deleted");
  }

  close(): void {
    this.admin.close();
  }
}

/** The apiserver's answer to one request made with `token` alone. */
export async function tokenStatus(token: string): Promise<number> {
  const dir = scratchDir("token-probe");
  const client = KubeClient.fromKubeconfig(writeKubeconfig(dir, { token }));
  try {
    await client.get("/api/v1/namespaces/default");
    return 200;
  } catch (error) {
    return (error as { statusCode?: number }).statusCode ?? 0;
  } finally {
    client.close();
  }
}
