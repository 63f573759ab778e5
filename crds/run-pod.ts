// The parts of a BackgroundTask that shape its run pods beyond the container:
// storage (volumes and where the runner mounts them) and placement (node
// selector, tolerations, node affinity, image pull secrets). Only volume
// kinds the Pod Security "restricted" profile allows are offered.
import { z } from "zod";

const cel = (rule: string, message: string, fieldPath?: string) => ({
  rule,
  message,
  ...(fieldPath ? { fieldPath } : {}),
});
const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a lowercase DNS label");
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a lowercase DNS name");
const quantity = z
  .string()
  .regex(
    /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/,
    "must be a Kubernetes quantity such as 500m or 256Mi",
  );
const fileMode = z.int().min(0).max(0o777).describe("File mode bits, e.g. 0644 (420 decimal).");

/** Name of the emptyDir the operator mounts at /tmp, so the runner has scratch space under a read-only root. */
export const SCRATCH_VOLUME = "nightshift-tmp";

const keyToPath = z
  .object({
    key: z.string().min(1).max(253).describe("Key to project."),
    path: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[^/]/, "must be a relative path")
      .describe("Relative file path of the key inside the volume."),
    mode: fileMode.optional(),
  })
  .strict();

export const volume = z
  .object({
    name: dnsLabel
      .meta({
        "x-kubernetes-validations": [
          cel(`self != '${SCRATCH_VOLUME}'`, `${SCRATCH_VOLUME} is reserved for the run's /tmp`),
        ],
      })
      .describe("Volume name, referenced by volumeMounts."),
    persistentVolumeClaim: z
      .object({
        claimName: dnsName.describe("PersistentVolumeClaim in the task's namespace."),
        readOnly: z.boolean().optional().describe("Mount read-only."),
      })
      .strict()
      .optional()
      .describe("A PersistentVolumeClaim, e.g. where files.backup writes its archives."),
    emptyDir: z
      .object({
        medium: z.enum(["", "Memory"]).optional().describe("'' (node disk) or Memory (tmpfs)."),
        sizeLimit: quantity.optional().describe("Size cap, e.g. 1Gi."),
      })
      .strict()
      .optional()
      .describe("Scratch space that lives as long as the run's pod."),
    configMap: z
      .object({
        name: dnsName.describe("ConfigMap in the task's namespace."),
        items: z.array(keyToPath).max(100).optional().describe("Keys to project; default all."),
        defaultMode: fileMode.optional(),
        optional: z.boolean().optional().describe("Run even when the ConfigMap is missing."),
      })
      .strict()
      .optional()
      .describe("Files from a ConfigMap."),
    secret: z
      .object({
        secretName: dnsName.describe("Secret in the task's namespace."),
        items: z.array(keyToPath).max(100).optional().describe("Keys to project; default all."),
        defaultMode: fileMode.optional(),
        optional: z.boolean().optional().describe("Run even when the Secret is missing."),
      })
      .strict()
      .optional()
      .describe("Files from a Secret."),
    csi: z
      .object({
        driver: dnsName.describe("CSI driver that provides the ephemeral volume."),
        readOnly: z.boolean().optional().describe("Mount read-only."),
        fsType: z.string().max(63).optional().describe("File system type, e.g. ext4."),
        volumeAttributes: z
          .record(z.string(), z.string())
          .optional()
          .describe("Driver-specific attributes."),
        nodePublishSecretRef: z
          .object({ name: dnsName.describe("Secret name.") })
          .strict()
          .optional()
          .describe("Secret passed to the driver."),
      })
      .strict()
      .optional()
      .describe("A CSI ephemeral inline volume."),
  })
  .strict()
  .meta({
    "x-kubernetes-validations": [
      cel(
        "[has(self.persistentVolumeClaim), has(self.emptyDir), has(self.configMap), has(self.secret), has(self.csi)].exists_one(x, x)",
        "exactly one of persistentVolumeClaim, emptyDir, configMap, secret or csi must be set",
      ),
    ],
  });

export const volumeMount = z
  .object({
    name: dnsLabel.describe("Name of a volume in spec.volumes."),
    mountPath: z
      .string()
      .min(2)
      .max(512)
      .regex(/^\/[^:]*$/, "must be an absolute path without ':'")
      .describe("Where the runner sees the volume, e.g. /data."),
    subPath: z
      .string()
      .max(512)
      .meta({
        "x-kubernetes-validations": [
          cel(
            "!self.startsWith('/') && !self.contains('..')",
            "must be a relative path without '..'",
          ),
        ],
      })
      .optional()
      .describe("Path inside the volume to mount instead of its root."),
    readOnly: z.boolean().optional().describe("Mount read-only."),
  })
  .strict();

const nodeSelectorRequirement = z
  .object({
    key: z.string().min(1).max(317).describe("Node label key."),
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]).describe("Operator."),
    values: z.array(z.string().max(63)).max(100).optional().describe("Values."),
  })
  .strict();
const nodeSelectorTerm = z
  .object({
    matchExpressions: z
      .array(nodeSelectorRequirement)
      .max(20)
      .optional()
      .describe("Requirements on node labels; all must hold."),
  })
  .strict();

export const affinity = z
  .object({
    nodeAffinity: z
      .object({
        requiredDuringSchedulingIgnoredDuringExecution: z
          .object({
            nodeSelectorTerms: z
              .array(nodeSelectorTerm)
              .min(1)
              .max(20)
              .describe("Terms; a node must match at least one."),
          })
          .strict()
          .optional()
          .describe("Nodes a run may only be scheduled on."),
        preferredDuringSchedulingIgnoredDuringExecution: z
          .array(
            z
              .object({
                weight: z.int().min(1).max(100).describe("Weight, 1-100."),
                preference: nodeSelectorTerm.describe("Node selector term."),
              })
              .strict(),
          )
          .max(20)
          .optional()
          .describe("Nodes a run prefers."),
      })
      .strict()
      .optional()
      .describe("Node affinity of the run's pods."),
  })
  .strict();

export const toleration = z
  .object({
    key: z.string().max(317).optional().describe("Taint key; empty with Exists matches all."),
    operator: z.enum(["Exists", "Equal"]).optional().describe("Exists or Equal (default)."),
    value: z.string().max(63).optional().describe("Taint value (Equal only)."),
    effect: z
      .enum(["NoSchedule", "PreferNoSchedule", "NoExecute"])
      .optional()
      .describe("Taint effect to tolerate; empty matches all."),
    tolerationSeconds: z
      .int()
      .min(0)
      .optional()
      .describe("How long a NoExecute taint is tolerated."),
  })
  .strict()
  .meta({
    "x-kubernetes-validations": [
      cel(
        "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
        "value must be empty when operator is Exists",
      ),
    ],
  });

/** The run-pod fields of spec, spread into backgroundTaskSpec. */
export const runPodFields = {
  volumes: z
    .array(volume)
    .max(20)
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
    .optional()
    .describe(
      "Volumes of the run's pod: persistentVolumeClaim, emptyDir, configMap, secret or csi (ephemeral). The runner sees those named in volumeMounts; /tmp is always a writable emptyDir.",
    ),
  volumeMounts: z
    .array(volumeMount)
    .max(20)
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"] })
    .optional()
    .describe("Where the runner's container mounts spec.volumes."),
  nodeSelector: z
    .record(z.string(), z.string().max(63))
    .optional()
    .describe("Node labels a run's pod requires, e.g. {disktype: ssd}."),
  tolerations: z.array(toleration).max(20).optional().describe("Taints the run's pods tolerate."),
  affinity: affinity.optional().describe("Node affinity of the run's pods."),
  imagePullSecrets: z
    .array(z.object({ name: dnsName.describe("Secret name.") }).strict())
    .max(10)
    .optional()
    .describe("Secrets (type dockerconfigjson) to pull the run's image with."),
};

/** CEL on spec: every mount names a declared volume. */
export const runPodRules = [
  cel(
    "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
    "every spec.volumeMounts[].name must name a volume in spec.volumes",
    ".volumeMounts",
  ),
];

export type RunPodFields = {
  [K in keyof typeof runPodFields]?: z.output<(typeof runPodFields)[K]>;
};
