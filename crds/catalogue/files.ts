// Parameters of the file tasks, which work on volumes mounted into the run's pod.
import { z } from "zod";
import { duration } from "../duration.ts";
import { absolutePath, sqlIdentifier } from "./fields.ts";

export const filesCleanupTempParams = z
  .object({
    paths: z
      .array(absolutePath("A directory to clean."))
      .min(1)
      .max(50)
      .describe("Directories to clean; symlinks out of them are never followed."),
    olderThan: duration("Files last modified longer ago than this are deleted."),
    include: z
      .array(z.string().min(1))
      .max(50)
      .optional()
      .describe("Glob patterns a file name must match to be deleted (default: all)."),
    exclude: z
      .array(z.string().min(1))
      .max(50)
      .optional()
      .describe("Glob patterns of file names never deleted."),
    dryRun: z.boolean().default(false).describe("Report what would be deleted without deleting."),
    removeEmptyDirs: z
      .boolean()
      .default(true)
      .describe("Remove directories left empty (never the roots themselves)."),
    maxFiles: z
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe("Upper bound on files deleted per run."),
  })
  .strict();

export const filesBackupParams = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "must be lowercase letters, digits and dashes")
      .default("backup")
      .describe("Prefix of each backup's folder name."),
    directories: z
      .array(absolutePath("A directory to archive."))
      .max(50)
      .optional()
      .describe("Directories archived as tar.gz."),
    tables: z
      .array(sqlIdentifier("A table to export."))
      .max(200)
      .optional()
      .describe("Database tables exported in one consistent snapshot (DATABASE_URL)."),
    destination: absolutePath("Directory where backups are written."),
    keep: z
      .int()
      .min(1)
      .max(1000)
      .default(7)
      .describe("Number of most recent backups kept; older ones are deleted."),
  })
  .strict()
  .refine((p) => (p.directories?.length ?? 0) + (p.tables?.length ?? 0) > 0, {
    message: "at least one of directories or tables must be given",
    path: ["directories"],
  });
