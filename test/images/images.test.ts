// The images' one build definition: the committed Dockerfiles are rendered
// from it (so `docker build` and `make images` cannot drift apart), and the
// archive writer gives the same digest for the same input.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { images } from "../../scripts/images/definitions.ts";
import { renderDockerfile } from "../../scripts/images/dockerfile.ts";
import { readArchiveIndex, writeOciArchive } from "../../scripts/images/oci-archive.ts";

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
