import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CredentialSource, isStale, parseExecCredential } from "./credentials.ts";

const V1 = "client.authentication.k8s.io/v1";
const execOutput = (status: Record<string, unknown>, apiVersion = V1) =>
  JSON.stringify({ apiVersion, kind: "ExecCredential", status });

describe("exec credentials", () => {
  it("reads token, certificate and expiry, checking what client-go checks", () => {
    expect(
      parseExecCredential(
        execOutput({ token: "t", expirationTimestamp: "2030-01-01T00:00:00Z" }),
        V1,
      ),
    ).toEqual({ token: "t", expiresAt: Date.parse("2030-01-01T00:00:00Z") });
    expect(() => parseExecCredential(execOutput({ token: "t" }, "v0"), V1)).toThrow("answered v0");
    expect(() => parseExecCredential(execOutput({}), V1)).toThrow("neither token");
    expect(() => parseExecCredential(execOutput({ clientCertificateData: "c" }), V1)).toThrow(
      "without key",
    );
    expect(() => parseExecCredential("oops", V1)).toThrow("no ExecCredential");
  });

  it("runs the plugin again once what it issued has expired, and after a 401", async () => {
    let now = 1_000_000;
    let issued = 0;
    const source = new CredentialSource(
      {
        exec: {
          command: "x",
          args: [],
          env: [],
          apiVersion: V1,
          provideClusterInfo: false,
          cluster: {},
        },
      },
      {
        now: () => now,
        runExec: async () =>
          execOutput({
            token: `t${++issued}`,
            expirationTimestamp: new Date(now + 60_000).toISOString(),
          }),
      },
    );
    const first = await source.current();
    expect(first.authorization).toBe("Bearer t1");
    expect(await source.current()).toBe(first);
    now += 61_000;
    expect((await source.current()).authorization).toBe("Bearer t2");
    const second = await source.current();
    expect(source.rejected(second)).toBe(true);
    expect((await source.current()).authorization).toBe("Bearer t3");
    expect(source.rejected(first)).toBe(true); // stale rejection: already refreshed, nothing to do
    expect((await source.current()).authorization).toBe("Bearer t3");
  });
});

describe("file credentials", () => {
  it("re-reads a token file every minute and at once after a 401, keeping the last value if it vanishes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "creds-"));
    const file = join(dir, "token");
    writeFileSync(file, "one\n");
    let now = 0;
    const source = new CredentialSource({ tokenFile: file }, { now: () => now });
    expect((await source.current()).authorization).toBe("Bearer one");
    writeFileSync(file, "two");
    expect((await source.current()).authorization).toBe("Bearer one");
    now += 60_000;
    expect((await source.current()).authorization).toBe("Bearer two");
    writeFileSync(file, "three");
    source.rejected(await source.current());
    expect((await source.current()).authorization).toBe("Bearer three");
  });

  it("uses a static token or basic auth as given, and cannot refresh it", async () => {
    const source = new CredentialSource({ token: "fixed" });
    const credentials = await source.current();
    expect(credentials.authorization).toBe("Bearer fixed");
    expect(source.rejected(credentials)).toBe(false);
    const basic = new CredentialSource({ username: "u", password: "p" });
    expect((await basic.current()).authorization).toBe(`Basic ${btoa("u:p")}`);
  });

  it("judges staleness by expiry first, then by age", () => {
    expect(isStale(undefined, 0, undefined)).toBe(true);
    expect(isStale({ readAt: 0, expiresAt: 10 }, 10, undefined)).toBe(true);
    expect(isStale({ readAt: 0, expiresAt: 10 }, 9, undefined)).toBe(false);
    expect(isStale({ readAt: 0 }, 59_999, 60_000)).toBe(false);
    expect(isStale({ readAt: 0 }, 60_000, 60_000)).toBe(true);
  });
});
