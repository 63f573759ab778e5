// The images' one build definition: the committed Dockerfiles are rendered
// from it (so `docker build` and `make images` cannot drift apart), and the
// archive writer gives the same digest for the same input.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { images } from "../../scripts/images/definitions.ts";
import { renderDockerfile } from "../../scripts/images/dockerfile.ts";
import { readArchiveIndex, writeOciArchive } from "../../scripts/images/oci-archive.ts";
import { buildImagesAsync } from "../controlplane/local-cluster.ts";

const root = new URL("../../", import.meta.url);

describe("image definitions", () => {
  it.each(Object.values(images))("$dockerfile is rendered from its definition", (image) => {
    const committed = readFileSync(new URL(image.dockerfile, root), "utf8");
    // On failure: `make dockerfiles` rewrites them from scripts/images/definitions.ts.
    expect(committed).toBe(renderDockerfile(image));
  });

  it("every image runs as the non-root user 65532 and copies only what it names", () => {
    for (const image of Object.values(images)) {
      const dockerfile = renderDockerfile(image);
      expect(dockerfile).toContain("USER 65532:65532");
      for (const source of image.sources) expect(dockerfile).toContain(`COPY ${source} `);
    }
  });
});

describe("OCI archives", () => {
  const dir = mkdtempSync(join(tmpdir(), "nightshift-oci-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("are reproducible: the same folder gives the same digest, a changed file another", () => {
    const rootfs = join(dir, "root");
    mkdirSync(join(rootfs, "bin"), { recursive: true });
    writeFileSync(join(rootfs, "bin", "hello"), "#!/hello\n");
    const config = { reference: "nightshift.local/hello:1", entrypoint: ["/bin/hello"] };
    const first = writeOciArchive(rootfs, config, join(dir, "a.tar"));
    const second = writeOciArchive(rootfs, config, join(dir, "b.tar"));
    expect(second.digest).toBe(first.digest);
    expect(readFileSync(join(dir, "b.tar"))).toEqual(readFileSync(join(dir, "a.tar")));
    expect(readArchiveIndex(first.path)).toEqual({
      reference: "nightshift.local/hello:1",
      digest: first.digest,
    });
    writeFileSync(join(rootfs, "bin", "hello"), "#!/hello v2\n");
    expect(writeOciArchive(rootfs, config, join(dir, "c.tar")).digest).not.toBe(first.digest);
  });
});

describe("the operator image", () => {
  const dir = mkdtempSync(join(tmpdir(), "nightshift-operator-image-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The archive's image config and its one layer, unpacked into `dir`. */
  async function unpackOperatorImage(): Promise<{ env: Map<string, string>; rootfs: string }> {
    const archive = (await buildImagesAsync(["operator"])).operator?.path ?? "";
    const blob = (digest: string) => `blobs/sha256/${digest.replace("sha256:", "")}`;
    const read = (name: string) =>
      JSON.parse(execFileSync("tar", ["-xOf", archive, name], { encoding: "utf8" }));
    const manifest = read(blob(readArchiveIndex(archive).digest));
    const config = read(blob(manifest.config.digest));
    const rootfs = join(dir, "rootfs");
    mkdirSync(rootfs, { recursive: true });
    execFileSync("sh", [
      "-c",
      `tar -xOf "$0" "$1" | tar -x -C "$2"`,
      archive,
      blob(manifest.layers[0].digest),
      rootfs,
    ]);
    const env = new Map<string, string>(
      config.config.Env.map((pair: string) => pair.split(/=(.*)/s).slice(0, 2)),
    );
    return { env, rootfs };
  }

  it("starts Node on the jemalloc it carries, with settings jemalloc accepts", {
    timeout: 300_000,
  }, async () => {
    const { env, rootfs } = await unpackOperatorImage();
    const preload = env.get("LD_PRELOAD") ?? "";
    expect(preload).toBe("/usr/local/lib/libjemalloc.so.2");
    // The image's own copy, preloaded into this machine's Node with the image's environment.
    const library = join(rootfs, preload);
    const probe = spawnSync(
      process.execPath,
      ["-e", "process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8'))"],
      {
        env: { ...Object.fromEntries(env), PATH: process.env.PATH ?? "", LD_PRELOAD: library },
        encoding: "utf8",
      },
    );
    expect(probe.status).toBe(0);
    expect(probe.stdout).toContain(library);
    // jemalloc names every pair of MALLOC_CONF it cannot use on stderr ("Invalid conf pair").
    expect(probe.stderr).toBe("");
  });

  it("runs its one bundled file without node_modules: every import loads and a bad flag is named", {
    timeout: 300_000,
  }, async () => {
    const { rootfs } = await unpackOperatorImage();
    const app = join(rootfs, "app");
    expect(existsSync(join(app, "node_modules"))).toBe(false);
    // The image's entrypoint, its script inside the unpacked image: no folder up the tree
    // holds node_modules.
    const [, ...flags] = images.operator.entrypoint.slice(0, -1);
    const script = join(app, images.operator.entrypoint.at(-1) ?? "");
    const run = spawnSync(process.execPath, [...flags, script, "--workers=many"], {
      cwd: app,
      env: { PATH: process.env.PATH ?? "" },
      encoding: "utf8",
    });
    expect(run.stderr).toContain("--workers / NIGHTSHIFT_WORKERS");
    expect(run.status).toBe(2);
  });
});
