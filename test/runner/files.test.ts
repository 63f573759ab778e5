// files.cleanup-temp and files.backup on real temporary directories and a
// real PostgreSQL database.
import { createHash } from "node:crypto";
import {
  existsSync,
  lutimesSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import pg from "pg";
import * as tar from "tar";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { freePorts } from "../controlplane/processes.ts";
import { createDatabase } from "../support/postgres.ts";
import { runTask } from "../support/runner.ts";

const DAY = 86_400;
function oldFile(path: string, content = "x", ageSeconds = 2 * DAY): void {
  writeFileSync(path, content);
  const t = Date.now() / 1000 - ageSeconds;
  utimesSync(path, t, t);
}

describe("files.cleanup-temp", () => {
  function tree(): { root: string; outside: string } {
    const base = mkdtempSync(join(tmpdir(), "cleanup-"));
    const root = join(base, "tmp");
    const outside = join(base, "precious");
    mkdirSync(join(root, "nested", "deeper"), { recursive: true });
    mkdirSync(outside);
    oldFile(join(root, "old.log"), "0123456789");
    oldFile(join(root, "old.keep"));
    writeFileSync(join(root, "fresh.log"), "new");
    oldFile(join(root, "nested", "deeper", "old.tmp"), "abc");
    oldFile(join(outside, "never-delete.txt"));
    symlinkSync(outside, join(root, "link-out"));
    const t = Date.now() / 1000 - 2 * DAY;
    lutimesSync(join(root, "link-out"), t, t);
    return { root, outside };
  }

  it("deletes old files (never through symlinks), keeps excluded and fresh ones, removes emptied directories", async () => {
    const { root, outside } = tree();
    const run = await runTask("files.cleanup-temp", {
      paths: [root],
      olderThan: "24h",
      exclude: ["*.keep"],
    });
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({ outcome: "succeeded", filesDeleted: 3, dirsRemoved: 2 });
    expect(run.result.bytesFreed).toBeGreaterThanOrEqual(13);
    expect(readdirSync(root).sort()).toEqual(["fresh.log", "old.keep"]);
    expect(existsSync(join(outside, "never-delete.txt"))).toBe(true);
  });

  it("is idempotent: a second run deletes nothing", async () => {
    const { root } = tree();
    await runTask("files.cleanup-temp", { paths: [root], olderThan: "24h" });
    const again = await runTask("files.cleanup-temp", { paths: [root], olderThan: "24h" });
    expect(again.code).toBe(0);
    expect(again.result).toMatchObject({ filesDeleted: 0, bytesFreed: 0 });
  });

  it("reports without deleting on dryRun, and skips missing roots", async () => {
    const { root } = tree();
    const run = await runTask("files.cleanup-temp", {
      paths: [root, "/no/such/root"],
      olderThan: "24h",
      dryRun: true,
    });
    expect(run.code).toBe(0);
    expect(run.result.filesDeleted).toBe(4);
    expect(run.result.skippedRoots).toEqual(["/no/such/root"]);
    expect(existsSync(join(root, "old.log"))).toBe(true);
  });

  it("rejects bad params with exit 64 naming the field", async () => {
    const run = await runTask("files.cleanup-temp", { paths: [], olderThan: "24h" });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain("params.paths");
  });

  it("stops on SIGTERM mid-run, reporting partial counts, with exit 75", async () => {
    const root = mkdtempSync(join(tmpdir(), "cleanup-big-"));
    for (let i = 0; i < 20_000; i++) oldFile(join(root, `f${i}`));
    const run = await runTask(
      "files.cleanup-temp",
      { paths: [root], olderThan: "1h" },
      { sigtermWhen: "deleted file" },
    );
    expect(run.code).toBe(75);
    expect(run.result.outcome).toBe("stopped");
    expect(run.result.filesDeleted).toBeGreaterThan(0);
    expect(run.result.filesDeleted).toBeLessThan(20_000);
    expect(readdirSync(root).length).toBe(20_000 - run.result.filesDeleted);
  });
});

describe("files.backup", () => {
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createDatabase(inject("postgresUrl"), "backup_test");
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query(
      "CREATE TABLE users (id int primary key, email text); INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 2500) g",
    );
    await db.query(
      "CREATE TABLE documents (id int primary key, title text); INSERT INTO documents VALUES (1, 'a'), (2, 'b')",
    );
    await db.end();
  });

  function data(): string {
    const dir = mkdtempSync(join(tmpdir(), "userdata-"));
    mkdirSync(join(dir, "files", "sub"), { recursive: true });
    writeFileSync(join(dir, "files", "a.txt"), "alpha");
    writeFileSync(join(dir, "files", "sub", "b.txt"), "beta");
    return join(dir, "files");
  }

  it("archives directories and a consistent table export with a SHA-256 manifest", async () => {
    const source = data();
    const destination = mkdtempSync(join(tmpdir(), "backups-"));
    const run = await runTask(
      "files.backup",
      { directories: [source], tables: ["users", "documents"], destination },
      { env: { DATABASE_URL: databaseUrl } },
    );
    expect(run.code).toBe(0);
    expect(run.result).toMatchObject({
      outcome: "succeeded",
      files: 3,
      tables: { users: 2500, documents: 2 },
    });
    const folder = run.result.backup as string;
    const manifest = JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8"));
    for (const f of manifest.files) {
      expect(
        createHash("sha256")
          .update(readFileSync(join(folder, f.file)))
          .digest("hex"),
      ).toBe(f.sha256);
    }
    const archived: string[] = [];
    await tar.list({
      file: join(folder, "dir-0-files.tar.gz"),
      onReadEntry: (e) => archived.push(e.path),
    });
    expect(archived).toEqual(expect.arrayContaining(["files/a.txt", "files/sub/b.txt"]));
    const rows = gunzipSync(readFileSync(join(folder, "table-users.jsonl.gz")))
      .toString()
      .trim()
      .split("\n");
    expect(rows).toHaveLength(2500);
    expect(JSON.parse(rows[0] as string)).toMatchObject({ id: 1, email: "u1@example.com" });
  });

  it("keeps the newest N backups when run repeatedly", async () => {
    const source = data();
    const destination = mkdtempSync(join(tmpdir(), "backups-"));
    for (let i = 0; i < 3; i++)
      expect(
        (await runTask("files.backup", { directories: [source], destination, keep: 2 })).code,
      ).toBe(0);
    expect(readdirSync(destination).filter((n) => n.startsWith("backup-"))).toHaveLength(2);
  });

  it("fails retryable (75) when the database is down, leaving no partial backup", async () => {
    const [closed] = await freePorts(1);
    const destination = mkdtempSync(join(tmpdir(), "backups-"));
    const run = await runTask(
      "files.backup",
      { tables: ["users"], destination },
      { env: { DATABASE_URL: `postgres://x@127.0.0.1:${closed}/db` } },
    );
    expect(run.code).toBe(75);
    expect(run.stderr).toContain("connecting to the database");
    expect(readdirSync(destination)).toEqual([]);
  });

  it("rejects a backup of nothing with exit 64 naming the field", async () => {
    const run = await runTask("files.backup", { destination: "/tmp/x" });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain(
      "params.directories: at least one of directories or tables must be given",
    );
  });

  it("stops on SIGTERM mid-backup, removing the unfinished backup", async () => {
    const destination = mkdtempSync(join(tmpdir(), "backups-"));
    const directories = Array.from({ length: 40 }, () => {
      const dir = data();
      writeFileSync(join(dir, "big.bin"), Buffer.alloc(2_000_000, 7));
      return dir;
    });
    const run = await runTask(
      "files.backup",
      { directories, destination },
      { sigtermWhen: "archived directory" },
    );
    expect(run.code).toBe(75);
    expect(readdirSync(destination)).toEqual([]);
  });
});
