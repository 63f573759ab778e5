// The operator's own kubeconfig loader and credential refresh, against the
// real control plane: every kind of kubeconfig a user may hand it, tokens
// rotated under a running operator, and rejected credentials made visible.
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeClient } from "../operator/runtime/kube-client.ts";
import { loadConnection } from "../operator/runtime/kubeconfig.ts";
import { createNamespace, eventually } from "./support/cluster.ts";
import {
  apiServer,
  base64File,
  caFile,
  clientCertificate,
  RevocableServiceAccount,
  scratchDir,
  writeKubeconfig,
} from "./support/identities.ts";
import { OperatorProcess } from "./support/operator.ts";
import { apply, readyTask, task, waitForStatus } from "./support/tasks.ts";

/** Who the apiserver says we are. */
async function whoAmI(client: KubeClient): Promise<string> {
  const review = await client.create<{ status: { userInfo: { username: string } } }>(
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  );
  client.close();
  return review.status.userInfo.username;
}

describe("kubeconfigs of every kind, on the real control plane", () => {
  let ns = "";
  let dir = "";
  let account: RevocableServiceAccount;
  beforeAll(async () => {
    ns = await createNamespace("creds");
    dir = scratchDir("creds");
    account = new RevocableServiceAccount(ns, "operator");
    await account.create();
  });
  afterAll(() => account.close());

  it("client certificate files and inline certificate data", async () => {
    const { cert, key } = clientCertificate(dir, "cert-user", []);
    const files = writeKubeconfig(dir, { "client-certificate": cert, "client-key": key });
    expect(await whoAmI(KubeClient.fromKubeconfig(files))).toBe("cert-user");
    const inline = join(dir, "inline");
    writeFileSync(
      inline,
      JSON.stringify({
        clusters: [
          {
            name: "c",
            cluster: { server: apiServer(), "certificate-authority-data": base64File(caFile()) },
          },
        ],
        users: [
          {
            name: "u",
            user: {
              "client-certificate-data": base64File(cert),
              "client-key-data": base64File(key),
            },
          },
        ],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        "current-context": "x",
      }),
    );
    expect(await whoAmI(KubeClient.fromKubeconfig(inline))).toBe("cert-user");
  });

  it("the context chosen by name, over current-context, in a merged KUBECONFIG list", async () => {
    const { cert, key } = clientCertificate(dir, "context-user", []);
    const good = writeKubeconfig(dir, { "client-certificate": cert, "client-key": key }, "good");
    const other = join(dir, "other");
    writeFileSync(
      other,
      JSON.stringify({
        clusters: [{ name: "nowhere", cluster: { server: "https://127.0.0.1:1" } }],
        users: [{ name: "nobody", user: { token: "x" } }],
        contexts: [
          { name: "broken", context: { cluster: "nowhere", user: "nobody" } },
          { name: "chosen", context: { cluster: "local", user: "user" } },
        ],
        "current-context": "broken",
      }),
    );
    // The first file's current-context wins; "chosen" names entries from the second file.
    const env = { KUBECONFIG: `${other}:${good}` };
    expect(loadConnection(env).server.port).toBe("1");
    expect(await whoAmI(new KubeClient(loadConnection(env, { context: "chosen" })))).toBe(
      "context-user",
    );
  });

  it("an in-cluster service account, its mounted token re-read after a 401", async () => {
    const mount = scratchDir("serviceaccount");
    writeFileSync(join(mount, "ca.crt"), readFileSync(caFile()));
    const first = await account.token();
    writeFileSync(join(mount, "token"), first);
    const server = new URL(apiServer());
    const env = { KUBERNETES_SERVICE_HOST: server.hostname, KUBERNETES_SERVICE_PORT: server.port };
    const client = new KubeClient(loadConnection(env, { serviceAccountDir: mount }));
    await client.get(`/api/v1/namespaces/${ns}`);
    // The kubelet rotates the projected token; the old one stops working.
    writeFileSync(join(mount, "token"), await account.token());
    await account.revoke(first);
    await client.get(`/api/v1/namespaces/${ns}`);
    expect(client.authFailures["401"]).toBe(1); // one rejection, then the re-read token
    expect(client.credentialsRejected).toBe(false);
    expect(await whoAmI(client)).toBe(`system:serviceaccount:${ns}:operator`);
  });

  it("an exec credential plugin, run again when its token expires", async () => {
    const tokenFile = join(dir, "exec-token");
    const runs = join(dir, "exec-runs");
    writeFileSync(runs, "");
    writeFileSync(tokenFile, await account.token());
    const plugin = join(dir, "issue-token.sh");
    // Issues the current token, valid for 10 s, and counts its runs.
    writeFileSync(
      plugin,
      `#!/bin/sh
echo run >> "${runs}"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}' "$(cat "${tokenFile}")" "$(date -u -d @$(( $(date +%s) + 10 )) +%Y-%m-%dT%H:%M:%SZ)"
`,
    );
    chmodSync(plugin, 0o755);
    const kubeconfig = writeKubeconfig(dir, {
      exec: {
        apiVersion: "client.authentication.k8s.io/v1",
        command: plugin,
        interactiveMode: "Never",
      },
    });
    const client = KubeClient.fromKubeconfig(kubeconfig);
    await client.get(`/api/v1/namespaces/${ns}`);
    await client.get(`/api/v1/namespaces/${ns}`);
    expect(readFileSync(runs, "utf8").split("\n").filter(Boolean)).toHaveLength(1);
    await eventually(
      async () => {
        await client.get(`/api/v1/namespaces/${ns}`);
        return readFileSync(runs, "utf8").split("\n").filter(Boolean).length >= 2
          ? true
          : undefined;
      },
      { what: "the plugin to run again after its token expired", timeoutMs: 60_000 },
    );
    expect(client.authFailures["401"]).toBe(0);
    client.close();
  });
});

describe("credentials rotated under a running operator", () => {
  it("follows a rotated token file, and shows rejected credentials in /readyz and metrics", async () => {
    const ns = await createNamespace("rotate");
    const account = new RevocableServiceAccount(ns, "operator");
    await account.create();
    const dir = scratchDir("rotate");
    const tokenFile = join(dir, "token");
    const first = await account.token();
    writeFileSync(tokenFile, first);
    const operator = await OperatorProcess.start({
      namespaces: [ns],
      kubeconfig: writeKubeconfig(dir, { tokenFile }),
    });
    try {
      await readyTask(ns, "before");

      writeFileSync(tokenFile, await account.token());
      await account.revoke(first);
      await readyTask(ns, "after-rotation");
      // At least one request met the revoked token, and was sent again with the new one.
      expect(
        await operator.metric("nightshift_apiserver_auth_failures", { code: "401" }),
      ).toBeGreaterThanOrEqual(1);
      expect((await operator.http("/readyz")).status).toBe(200);

      // Revoked with nothing to replace it: the operator cannot work, and says so.
      await account.revoke(readFileSync(tokenFile, "utf8"));
      apply(
        task(ns, "while-revoked", {
          task: "http.request",
          schedule: "0 0 1 1 *",
          params: { url: "https://example.com" },
        }),
      );
      await eventually(
        async () => ((await operator.http("/readyz")).status === 503 ? true : undefined),
        { what: "/readyz to fail with rejected credentials", timeoutMs: 60_000 },
      );
      expect(await operator.metric("nightshift_apiserver_credentials_rejected")).toBe(1);

      // A new token on disk: the next request re-reads it and the operator recovers.
      writeFileSync(tokenFile, await account.token());
      await readyTask(ns, "after-recovery");
      expect((await operator.http("/readyz")).status).toBe(200);
      expect(await operator.metric("nightshift_apiserver_credentials_rejected")).toBe(0);
      await waitForStatus(
        ns,
        "while-revoked",
        "Ready",
        (s) => s.conditions?.some((c: any) => c.type === "Ready" && c.status === "True"),
        120_000,
      );
    } finally {
      await operator.stop();
      account.close();
    }
  });
});
