// files.backup: archive directories (tar.gz) and database tables (JSON lines,
// gzip, from one REPEATABLE READ snapshot so they are mutually consistent)
// into <destination>/<name>-<time>/ with a SHA-256 manifest. A backup is
// built in a hidden folder and renamed into place only when complete, then
// all but the newest `keep` backups are deleted.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import * as tar from "tar";
import type { z } from "zod";
import type { filesBackupParams } from "../../crds/catalogue/files.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify, configError, retryable } from "../errors.ts";
import { connect, ident, transaction } from "../lib/db.ts";

type Params = z.output<typeof filesBackupParams>;

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

async function exportTables(
  params: Params,
  ctx: TaskContext,
  folder: string,
): Promise<Record<string, number>> {
  const db = await connect(ctx, 0);
  const rowsByTable: Record<string, number> = {};
  try {
    await transaction(db, async () => {
      await db.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      for (const table of params.tables ?? []) {
        if (stopping(ctx)) throw retryable("stopped before the table export finished");
        await db.query(
          `DECLARE backup_cursor NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS line FROM ${ident(table)} t`,
        );
        const gzip = createGzip();
        const done = pipeline(gzip, createWriteStream(join(folder, `table-${table}.jsonl.gz`)));
        let rows = 0;
        for (;;) {
          const batch = await db.query("FETCH 1000 FROM backup_cursor");
          if (batch.rows.length === 0) break;
          rows += batch.rows.length;
          if (!gzip.write(`${batch.rows.map((r) => r.line).join("\n")}\n`))
            await new Promise((resolve) => gzip.once("drain", resolve));
        }
        gzip.end();
        await done;
        await db.query("CLOSE backup_cursor");
        rowsByTable[table] = rows;
      }
    });
  } catch (error) {
    throw classify(error, "exporting tables");
  } finally {
    await db.end().catch(() => {});
  }
  return rowsByTable;
}

export async function filesBackup(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  try {
    await mkdir(params.destination, { recursive: true });
  } catch (error) {
    throw configError(
      `cannot create the destination ${params.destination}: ${(error as Error).message}`,
    );
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "Z");
  const id = `${params.name}-${stamp}-${randomBytes(3).toString("hex")}`;
  const partial = join(params.destination, `.${id}.partial`);
  const final = join(params.destination, id);
  await mkdir(partial);
  try {
    const files: Array<{ file: string; bytes: number; sha256: string }> = [];
    for (const [i, directory] of (params.directories ?? []).entries()) {
      if (stopping(ctx)) throw retryable("stopped before the backup was complete");
      const info = await stat(directory).catch(() => undefined);
      if (!info?.isDirectory())
        throw configError(`directory ${directory} does not exist; check params.directories[${i}]`);
      const file = `dir-${i}-${basename(directory) || "root"}.tar.gz`;
      await tar.create(
        { gzip: true, cwd: dirname(directory), file: join(partial, file), portable: true },
        [basename(directory)],
      );
      ctx.log.debug({ directory }, "archived directory");
    }
    const tables = params.tables?.length ? await exportTables(params, ctx, partial) : {};
    for (const file of (await readdir(partial)).sort()) {
      const path = join(partial, file);
      files.push({ file, bytes: (await stat(path)).size, sha256: await sha256(path) });
    }
    const manifest = {
      id,
      createdAt: new Date().toISOString(),
      directories: params.directories ?? [],
      tables,
      files,
    };
    await writeFile(join(partial, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(partial, final);

    // Retention: newest first by name (the timestamp sorts), complete backups only.
    const backups = (await readdir(params.destination))
      .filter((n) => n.startsWith(`${params.name}-`))
      .sort()
      .reverse();
    const removed: string[] = [];
    for (const old of backups.slice(params.keep)) {
      await rm(join(params.destination, old), { recursive: true, force: true });
      removed.push(old);
    }
    return {
      backup: final,
      files: files.length,
      bytes: files.reduce((n, f) => n + f.bytes, 0),
      tables,
      removed: removed.length,
    };
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw classify(error, "writing the backup");
  }
}
