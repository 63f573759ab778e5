// Starting runs of a task the way the CronJob controller does (a Job from
// the CronJob's jobTemplate, owned by the CronJob), with kwok annotations
// deciding how the pod ends.
import { kubectl } from "./cluster.ts";

export interface RunOptions {
  /** Exit code the runner "returns"; 0 (default) succeeds. */
  exitCode?: number;
  /** How long the pod runs, e.g. "3s". */
  duration?: string;
  /** Termination message of a successful run, as the runner writes it. */
  result?: string;
  /** The pod never starts: the kubelet's CreateContainerConfigError message, e.g. `secret "x" not found`. */
  configError?: string;
}

export function kwokPodBehaviour(options: RunOptions): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
} {
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  if (options.exitCode) {
    labels["pod-container-running-failed.stage.kwok.x-k8s.io"] = "true";
    annotations["pod-container-running-failed.stage.kwok.x-k8s.io/exit-code"] = String(
      options.exitCode,
    );
    annotations["pod-container-running-failed.stage.kwok.x-k8s.io/message"] =
      `{"error":"exit ${options.exitCode}"}`;
    if (options.duration)
      annotations["pod-container-running-failed.stage.kwok.x-k8s.io/delay"] = options.duration;
  } else if (options.duration) {
    annotations["pod-complete.stage.kwok.x-k8s.io/delay"] = options.duration;
  }
  if (options.result) annotations["nightshift.dev/fake-termination-message"] = options.result;
  if (options.configError) annotations["nightshift.dev/fake-config-error"] = options.configError;
  return { labels, annotations };
}

/** Creates a run Job exactly as the CronJob controller would, and returns its name. */
export function startScheduledRun(
  namespace: string,
  cronJobName: string,
  jobName: string,
  options: RunOptions = {},
): string {
  const cronJob = JSON.parse(
    kubectl(["get", "cronjob", cronJobName, "-n", namespace, "-o", "json"]),
  );
  const template = cronJob.spec.jobTemplate;
  const pod = kwokPodBehaviour(options);
  const spec = structuredClone(template.spec);
  spec.template.metadata.labels = { ...spec.template.metadata.labels, ...pod.labels };
  spec.template.metadata.annotations = {
    ...(spec.template.metadata.annotations ?? {}),
    ...pod.annotations,
  };
  const job = {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: jobName,
      namespace,
      labels: template.metadata.labels,
      annotations: template.metadata.annotations,
      ownerReferences: [
        {
          apiVersion: "batch/v1",
          kind: "CronJob",
          name: cronJobName,
          uid: cronJob.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec,
  };
  kubectl(["create", "-f", "-"], JSON.stringify(job));
  return jobName;
}
