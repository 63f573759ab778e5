import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  inClusterConnection,
  loadConnection,
  mergeKubeconfigs,
  resolveContext,
} from "./kubeconfig.ts";

const first = `
current-context: a
clusters:
- name: one
  cluster: {server: "https://one:6443", certificate-authority: certs/ca.crt}
- name: two
  cluster: {server: "https://two:6443", certificate-authority-data: ${Buffer.from("CA-TWO").toString("base64")}, tls-server-name: api.two}
users:
- name: alice
  user: {tokenFile: tokens/alice}
- name: bob
  user:
    client-certificate: bob.crt
    client-key-data: ${Buffer.from("BOB-KEY").toString("base64")}
contexts:
- name: a
  context: {cluster: one, user: alice}
- name: b
  context: {cluster: two, user: bob}
`;
const second = `
current-context: b
users:
- name: alice
  user: {token: from-second-file}
- name: carol
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./bin/issue-token
      args: [--short]
      env: [{name: AUDIENCE, value: nightshift}]
      provideClusterInfo: true
contexts:
- name: c
  context: {cluster: two, user: carol}
`;

describe("kubeconfig loading", () => {
  const dir = mkdtempSync(join(tmpdir(), "kubeconfig-"));
  mkdirSync(join(dir, "certs"));
  mkdirSync(join(dir, "other"));
  writeFileSync(join(dir, "certs/ca.crt"), "CA-ONE");
  const files = [
    { path: join(dir, "config"), text: first },
    { path: join(dir, "other/config"), text: second },
  ];

  it("merges files as client-go does: the first current-context and the first entry of a name win", () => {
    const merged = mergeKubeconfigs(files);
    const a = resolveContext(merged);
    expect(a.server.host).toBe("one:6443");
    expect(a.ca).toBe("CA-ONE");
    expect(a.auth.tokenFile).toBe(join(dir, "tokens/alice"));
    expect(a.auth.token).toBeUndefined();
  });

  it("resolves relative paths against the file that named them, and inline data as text", () => {
    const b = resolveContext(mergeKubeconfigs(files), "b");
    expect(b.tlsServerName).toBe("api.two");
    expect(b.ca).toBe("CA-TWO");
    expect(b.auth.clientCertificate).toEqual({ file: join(dir, "bob.crt") });
    expect(b.auth.clientKey).toEqual({ data: "BOB-KEY" });
    const c = resolveContext(mergeKubeconfigs(files), "c");
    expect(c.auth.exec).toMatchObject({
      command: join(dir, "other/bin/issue-token"),
      args: ["--short"],
      env: [{ name: "AUDIENCE", value: "nightshift" }],
      provideClusterInfo: true,
      cluster: { server: "https://two:6443", "tls-server-name": "api.two" },
    });
  });

  it("names what is missing or unsupported", () => {
    expect(() => resolveContext(mergeKubeconfigs(files), "nope")).toThrow(
      'context "nope" not found',
    );
    const provider = `
clusters: [{name: x, cluster: {server: "https://x"}}]
users: [{name: u, user: {auth-provider: {name: gcp}}}]
contexts: [{name: x, context: {cluster: x, user: u}}]
current-context: x`;
    expect(() => resolveContext(mergeKubeconfigs([{ path: "/k", text: provider }]))).toThrow(
      'auth-provider "gcp" is not supported',
    );
  });

  it("reads KUBECONFIG's list, skipping files that do not exist", () => {
    writeFileSync(files[0]?.path as string, first);
    const connection = loadConnection({ KUBECONFIG: `${join(dir, "missing")}:${files[0]?.path}` });
    expect(connection.server.host).toBe("one:6443");
    expect(() => loadConnection({ KUBECONFIG: join(dir, "missing") })).toThrow("no such file");
  });

  it("builds the in-cluster connection from the service environment and mounted files", () => {
    const sa = join(dir, "sa");
    mkdirSync(sa);
    writeFileSync(join(sa, "token"), "t");
    writeFileSync(join(sa, "ca.crt"), "CA");
    expect(inClusterConnection({}, sa)).toBeUndefined();
    const conn = inClusterConnection(
      { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" },
      sa,
    );
    expect(conn?.server.toString()).toBe("https://[fd00::1]/");
    expect(conn?.auth.tokenFile).toBe(join(sa, "token"));
  });
});
