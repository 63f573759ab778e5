// Writes a root folder as a single-layer OCI image archive, without Docker or a
// registry: the same folder gives the same bytes, so the same digest (sorted
// names, every file owned by 0:0, mtime 0; GNU tar). `ctr images import`
// takes it, naming the image from the io.containerd.image.name annotation.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";

export interface ImageConfig {
  /** Full reference, e.g. nightshift.local/task-runner:dev. */
  reference: string;
  entrypoint: string[];
  cmd?: string[];
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
  exposedPorts?: number[];
}

export interface ImageArchive {
  reference: string;
  path: string;
  /** Digest of the manifest: what `ctr images ls` and the kubelet show. */
  digest: string;
  /** Bytes of the archive (one uncompressed layer). */
  size: number;
}

const EPOCH = "1970-01-01T00:00:00Z";
const DETERMINISTIC_TAR = [
  "--sort=name",
  "--mtime=@0",
  "--numeric-owner",
  "--owner=0",
  "--group=0",
  "--format=gnu",
];

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Builds `out` from `rootfs`; returns its reference, digest and size. */
export function writeOciArchive(rootfs: string, config: ImageConfig, out: string): ImageArchive {
  const work = mkdtempSync(join(dirname(out), ".oci-"));
  try {
    const blobs = join(work, "blobs", "sha256");
    mkdirSync(blobs, { recursive: true });
    const addBlob = (data: Buffer) => {
      const digest = sha256(data);
      writeFileSync(join(blobs, digest), data);
      return { digest: `sha256:${digest}`, size: data.length };
    };
    const layerPath = join(work, "layer.tar");
    execFileSync("tar", ["-C", rootfs, ...DETERMINISTIC_TAR, "-cf", layerPath, "."]);
    const layerData = readFileSync(layerPath);
    const layerDigest = sha256(layerData);
    renameSync(layerPath, join(blobs, layerDigest));
    const layer = { digest: `sha256:${layerDigest}`, size: layerData.length };

    const env = {
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      ...config.env,
    };
    const imageConfig = {
      architecture: "amd64",
      os: "linux",
      created: EPOCH,
      config: {
        Entrypoint: config.entrypoint,
        ...(config.cmd ? { Cmd: config.cmd } : {}),
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        WorkingDir: config.workdir ?? "/",
        ...(config.user ? { User: config.user } : {}),
        ...(config.exposedPorts?.length
          ? { ExposedPorts: Object.fromEntries(config.exposedPorts.map((p) => [`${p}/tcp`, {}])) }
          : {}),
      },
      rootfs: { type: "layers", diff_ids: [layer.digest] },
      history: [{ created: EPOCH, created_by: "scripts/images/oci-archive.ts" }],
    };
    const configBlob = addBlob(Buffer.from(JSON.stringify(imageConfig)));
    const manifest = addBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
        }),
      ),
    );
    const tag = config.reference.slice(config.reference.lastIndexOf(":") + 1);
    writeFileSync(join(work, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(
      join(work, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            platform: { architecture: "amd64", os: "linux" },
            annotations: {
              "io.containerd.image.name": config.reference,
              "org.opencontainers.image.ref.name": tag,
            },
          },
        ],
      }),
    );
    const tmpOut = `${out}.partial`;
    execFileSync("tar", [
      "-C",
      work,
      ...DETERMINISTIC_TAR,
      "-cf",
      tmpOut,
      "oci-layout",
      "index.json",
      "blobs",
    ]);
    renameSync(tmpOut, out);
    return {
      reference: config.reference,
      path: out,
      digest: manifest.digest,
      size: statSync(out).size,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Reads reference and manifest digest back from an archive written above. */
export function readArchiveIndex(path: string): { reference: string; digest: string } {
  const index = JSON.parse(execFileSync("tar", ["-xOf", path, "index.json"], { encoding: "utf8" }));
  const entry = index.manifests[0];
  return { reference: entry.annotations["io.containerd.image.name"], digest: entry.digest };
}
