// Checks of spec.volumes / spec.volumeMounts that the CRD makes with CEL, made
// again here for objects that skipped admission (an older CRD, a bypass).
import type { BackgroundTaskSpec } from "../../crds/backgroundtask.ts";
import { SCRATCH_VOLUME } from "../../crds/run-pod.ts";

const VOLUME_SOURCES = ["persistentVolumeClaim", "emptyDir", "configMap", "secret", "csi"] as const;

export interface RunPodProblem {
  field: string;
  message: string;
}

export function runPodProblem(spec: BackgroundTaskSpec): RunPodProblem | undefined {
  const names = new Set<string>();
  for (const [i, volume] of (spec.volumes ?? []).entries()) {
    const field = `spec.volumes[${i}]`;
    const sources = VOLUME_SOURCES.filter((s) => volume[s] !== undefined);
    if (sources.length !== 1)
      return {
        field,
        message: `exactly one of ${VOLUME_SOURCES.join(", ")} must be set (found ${sources.length})`,
      };
    if (volume.name === SCRATCH_VOLUME)
      return {
        field: `${field}.name`,
        message: `${SCRATCH_VOLUME} is reserved for the run's /tmp`,
      };
    if (names.has(volume.name))
      return { field: `${field}.name`, message: `duplicate volume name ${volume.name}` };
    names.add(volume.name);
  }
  const paths = new Set<string>();
  for (const [i, mount] of (spec.volumeMounts ?? []).entries()) {
    const field = `spec.volumeMounts[${i}]`;
    if (!names.has(mount.name))
      return { field: `${field}.name`, message: `no volume named ${mount.name} in spec.volumes` };
    if (paths.has(mount.mountPath))
      return { field: `${field}.mountPath`, message: `${mount.mountPath} is mounted twice` };
    paths.add(mount.mountPath);
  }
  return undefined;
}
