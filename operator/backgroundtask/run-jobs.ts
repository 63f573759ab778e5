// Runs the operator starts itself (run now, delayed retries, half-open
// trials) are Jobs made from the CronJob's template exactly as
// `kubectl create job --from=cronjob/x` does, owned by the CronJob and
// named deterministically so that a crash and a second attempt cannot start
// the same run twice.
import { createHash } from "node:crypto";
import { RUN_FINALIZER, RUN_KIND_ANNOTATION } from "./labels.ts";

export interface CronJobTemplateSource {
  metadata: { name: string; namespace?: string; uid?: string };
  spec?: {
    jobTemplate?: {
      metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
      spec?: unknown;
    };
  };
}

export type RunKind = "manual" | "retry" | "trial";

const SUFFIX: Record<RunKind, string> = { manual: "m", retry: "r", trial: "t" };

/** Job name for an operator-started run, unique per (kind, seed): ≤ 63 characters. */
export function runJobName(cronJobName: string, kind: RunKind, seed: string): string {
  return `${cronJobName}-${SUFFIX[kind]}${createHash("sha256").update(seed).digest("hex").slice(0, 8)}`;
}

export function runJob(
  cronJob: CronJobTemplateSource,
  name: string,
  kind: RunKind,
): Record<string, unknown> {
  const template = cronJob.spec?.jobTemplate;
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: cronJob.metadata.namespace,
      labels: { ...(template?.metadata?.labels ?? {}) },
      annotations: { ...(template?.metadata?.annotations ?? {}), [RUN_KIND_ANNOTATION]: kind },
      // Created with the finalizer: this run can never vanish unrecorded.
      finalizers: [RUN_FINALIZER],
      ownerReferences: [
        {
          apiVersion: "batch/v1",
          kind: "CronJob",
          name: cronJob.metadata.name,
          uid: cronJob.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: template?.spec,
  };
}
