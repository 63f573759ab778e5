// Builds Nightshift's images as OCI archives into the machine's cache, each
// under a key of everything that goes into it, so an unchanged image is not
// rebuilt: the task runner and the operator (from definitions.ts), the pause
// image a real node's pod sandboxes need, and `testbox`, a tiny static image
// for custom-container tasks. `make images` runs this file.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleInto } from "./bundle.ts";
import {
  imageEnv,
  images,
  localReference,
  NODE_IMAGE,
  type NodeAppImage,
  type NodeImageName,
  type PreloadedLibrary,
  preloadPath,
} from "./definitions.ts";
import { type ImageArchive, type ImageConfig, writeOciArchive } from "./oci-archive.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
/** Bump when the layout written here changes, so cached archives are rebuilt. */
const LAYOUT_VERSION = "2";

export type ImageName = NodeImageName | "pause" | "testbox";
export const ALL_IMAGES: ImageName[] = ["task-runner", "operator", "pause", "testbox"];

export function imageCacheDir(): string {
  const cache =
    process.env.NIGHTSHIFT_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "nightshift");
  return join(cache, "images");
}

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => filesUnder(join(path, e.name)));
}

function hashFiles(hash: ReturnType<typeof createHash>, paths: string[]): void {
  for (const file of paths.flatMap(filesUnder)) {
    hash.update(relative(repo, file)).update("\0").update(readFileSync(file)).update("\0");
  }
}

/** The dynamic loader and every library `ldd` names for a binary, as absolute paths. */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  return [...out.matchAll(/(\/\S+)/g)].map((m) => m[1] as string).sort();
}

const nodeBinary = join(repo, "node_modules", "node", "bin", "node");

/** This machine's copy of a preloaded library (the image takes it from here). */
export function hostLibrary(library: PreloadedLibrary): string {
  const cache = execFileSync("/sbin/ldconfig", ["-p"], { encoding: "utf8" });
  const found = cache
    .split("\n")
    .map((line) => /^\s*(\S+) \([^)]*\) => (\S+)$/.exec(line))
    .find((m) => m?.[1] === library.file)?.[2];
  if (!found)
    throw new Error(
      `${library.file} is not installed: the operator image preloads it (apt-get install ${library.debianPackage})`,
    );
  return realpathSync(found);
}

/** Production node_modules for the lockfile, installed once per lockfile. */
function productionDependencies(cacheDir: string, log: (line: string) => void): string {
  const key = createHash("sha256")
    .update(readFileSync(join(repo, "package.json")))
    .update(readFileSync(join(repo, "package-lock.json")))
    .digest("hex")
    .slice(0, 16);
  const dir = join(cacheDir, `deps-${key}`);
  if (existsSync(join(dir, ".complete"))) return join(dir, "node_modules");
  log("installing production dependencies (npm ci --omit=dev)");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(repo, "package.json"), join(dir, "package.json"));
  copyFileSync(join(repo, "package-lock.json"), join(dir, "package-lock.json"));
  const [npm, ...args] = NODE_IMAGE.npmCi as [string, ...string[]];
  execFileSync(npm, [...args, "--loglevel=error"], { cwd: dir, stdio: "ignore" });
  writeFileSync(join(dir, ".complete"), "");
  return join(dir, "node_modules");
}

function writeUsers(root: string): void {
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
  );
  writeFileSync(join(root, "etc", "group"), "root:x:0:\nnonroot:x:65532:\n");
  mkdirSync(join(root, "tmp"), { recursive: true });
  chmodSync(join(root, "tmp"), 0o1777);
}

interface Recipe {
  key: string;
  config: ImageConfig;
  /** Fills the root folder. */
  fill: (root: string) => void;
}

function nodeAppRecipe(name: NodeImageName, cacheDir: string, log: (l: string) => void): Recipe {
  const image: NodeAppImage = images[name];
  const libraries = sharedLibraries(nodeBinary);
  const preload = image.preload && {
    from: hostLibrary(image.preload),
    to: preloadPath(image.preload),
  };
  const hash = createHash("sha256").update(LAYOUT_VERSION).update(JSON.stringify(image));
  hash.update(JSON.stringify(NODE_IMAGE)).update(libraries.join("\n"));
  hashFiles(hash, [
    nodeBinary,
    ...(preload ? [preload.from] : []),
    join(repo, "package-lock.json"),
    ...image.sources.map((s) => join(repo, s)),
    ...(image.bundle ? image.bundle.inputs.map((input) => join(repo, input)) : []),
  ]);
  return {
    key: hash.digest("hex").slice(0, 16),
    config: {
      reference: localReference(image.name),
      entrypoint: image.entrypoint,
      ...(image.cmd ? { cmd: image.cmd } : {}),
      env: imageEnv(image),
      workdir: NODE_IMAGE.workdir,
      user: NODE_IMAGE.user,
      ...(image.expose ? { exposedPorts: image.expose } : {}),
    },
    fill: (root) => {
      mkdirSync(join(root, dirname(NODE_IMAGE.nodePath)), { recursive: true });
      copyFileSync(nodeBinary, join(root, NODE_IMAGE.nodePath));
      for (const lib of libraries) {
        mkdirSync(join(root, dirname(lib)), { recursive: true });
        copyFileSync(lib, join(root, lib)); // follows symlinks: the real file at the linked name
      }
      if (preload) {
        mkdirSync(join(root, dirname(preload.to)), { recursive: true });
        copyFileSync(preload.from, join(root, preload.to));
      }
      writeUsers(root);
      const app = join(root, NODE_IMAGE.workdir);
      mkdirSync(app, { recursive: true });
      // A bundle holds its dependencies: its image carries no node_modules.
      if (!image.bundle)
        cpSync(productionDependencies(cacheDir, log), join(app, "node_modules"), {
          recursive: true,
        });
      for (const source of image.sources) {
        cpSync(join(repo, source), join(app, source), { recursive: true });
      }
      if (image.bundle) bundleInto(image.bundle, join(app, image.bundle.output));
    },
  };
}

/** An image holding one static binary from the node-tools build. */
function binaryRecipe(name: "pause" | "testbox", binDir: string): Recipe {
  const binary = join(binDir, name);
  const hash = createHash("sha256").update(LAYOUT_VERSION).update(name);
  hash.update(readFileSync(binary));
  return {
    key: hash.digest("hex").slice(0, 16),
    config: {
      reference: `nightshift.local/${name}:1`,
      entrypoint: [`/${name}`],
      // The sandbox's pause runs as the kubelet says; testbox is a non-root task image.
      user: name === "pause" ? "65535:65535" : NODE_IMAGE.user,
    },
    fill: (root) => {
      copyFileSync(binary, join(root, name));
      chmodSync(join(root, name), 0o755);
      if (name === "testbox") writeUsers(root);
    },
  };
}

export interface BuildOptions {
  /** Folder of the built binaries (pause and testbox come from there). */
  binDir: string;
  only?: ImageName[];
  /** Rebuild even when a cached archive exists (to show reproducibility). */
  force?: boolean;
  log?: (line: string) => void;
}

/** Builds (or finds in the cache) each image's archive. */
export function buildImages(options: BuildOptions): Record<ImageName, ImageArchive> {
  const log = options.log ?? (() => {});
  const cacheDir = imageCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  const result = {} as Record<ImageName, ImageArchive>;
  for (const name of options.only ?? ALL_IMAGES) {
    const recipe =
      name === "pause" || name === "testbox"
        ? binaryRecipe(name, options.binDir)
        : nodeAppRecipe(name, cacheDir, log);
    const out = join(cacheDir, `${name}-${recipe.key}.tar`);
    const meta = `${out}.json`;
    if (!options.force && existsSync(meta)) {
      result[name] = JSON.parse(readFileSync(meta, "utf8"));
      continue;
    }
    const started = Date.now();
    const root = mkdtempSync(join(cacheDir, `.root-${name}-`));
    try {
      recipe.fill(root);
      result[name] = writeOciArchive(root, recipe.config, out);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    writeFileSync(meta, JSON.stringify(result[name]));
    log(`built ${recipe.config.reference} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // node scripts/images/build.ts [--force] [--json] [image...]
  const { ensureBinaries } = await import("../../test/controlplane/controlplane.ts");
  const args = process.argv.slice(2);
  const only = args.filter((a) => !a.startsWith("--")) as ImageName[];
  for (const name of only)
    if (!ALL_IMAGES.includes(name)) throw new Error(`unknown image ${name}; known: ${ALL_IMAGES}`);
  const built = buildImages({
    binDir: ensureBinaries(),
    force: args.includes("--force"),
    ...(only.length ? { only } : {}),
    log: (line) => console.error(`[images] ${line}`),
  });
  if (args.includes("--json")) console.log(JSON.stringify(built));
  else
    for (const [name, image] of Object.entries(built)) {
      const mb = (image.size / 1024 / 1024).toFixed(1);
      console.log(
        `${name.padEnd(12)} ${image.reference.padEnd(36)} ${mb.padStart(6)} MB  ${image.digest}`,
      );
    }
}
