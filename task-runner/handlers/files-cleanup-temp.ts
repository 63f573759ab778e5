// files.cleanup-temp: delete files older than an age under given roots. Uses
// lstat throughout, so a symlink is deleted as a link and never followed out
// of its root; directories left empty are removed, never the roots.
import { lstat, opendir, realpath, rmdir, unlink } from "node:fs/promises";
import { basename, join } from "node:path";
import picomatch from "picomatch";
import type { z } from "zod";
import type { filesCleanupTempParams } from "../../crds/catalogue/files.ts";
import { parseDuration } from "../../crds/duration.ts";
import { stopping, type TaskContext } from "../context.ts";
import { classify } from "../errors.ts";

type Params = z.output<typeof filesCleanupTempParams>;

export async function filesCleanupTemp(
  params: Params,
  ctx: TaskContext,
): Promise<Record<string, unknown>> {
  const cutoff = Date.now() - parseDuration(params.olderThan);
  const included = params.include?.length ? picomatch(params.include, { dot: true }) : () => true;
  const excluded = params.exclude?.length ? picomatch(params.exclude, { dot: true }) : () => false;
  const stats = {
    scanned: 0,
    filesDeleted: 0,
    bytesFreed: 0,
    dirsRemoved: 0,
    skippedRoots: [] as string[],
    dryRun: params.dryRun,
    limitReached: false,
  };

  async function clean(dir: string, isRoot: boolean): Promise<boolean> {
    let empty = true;
    let handle: Awaited<ReturnType<typeof opendir>>;
    try {
      handle = await opendir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw classify(error, `reading ${dir}`);
    }
    for await (const entry of handle) {
      if (stopping(ctx) || stats.filesDeleted >= params.maxFiles) {
        stats.limitReached ||= stats.filesDeleted >= params.maxFiles;
        empty = false;
        continue;
      }
      const path = join(dir, entry.name);
      const info = await lstat(path).catch(() => undefined);
      if (!info) continue;
      if (info.isDirectory()) {
        if (await clean(path, false)) {
          if (!params.dryRun) await rmdir(path).catch(() => {});
          stats.dirsRemoved++;
        } else {
          empty = false;
        }
        continue;
      }
      stats.scanned++;
      const name = basename(path);
      if (info.mtimeMs >= cutoff || !included(name) || excluded(name)) {
        empty = false;
        continue;
      }
      if (!params.dryRun) {
        try {
          await unlink(path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT")
            throw classify(error, `deleting ${path}`);
          continue; // deleted meanwhile by a run working in parallel
        }
      } else {
        empty = false;
      }
      stats.filesDeleted++;
      stats.bytesFreed += info.size;
      ctx.log.debug({ path }, params.dryRun ? "would delete file" : "deleted file");
    }
    return empty && !isRoot && params.removeEmptyDirs;
  }

  for (const root of params.paths) {
    let real: string;
    try {
      real = await realpath(root);
    } catch {
      stats.skippedRoots.push(root);
      continue;
    }
    await clean(real, true);
  }
  ctx.log.info(stats, "cleanup done");
  return stats;
}
