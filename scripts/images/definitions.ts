// The one build definition of each Nightshift image. Both builds derive from
// it: `make images` (oci-build.ts, no Docker) and the committed Dockerfiles
// (dockerfile.ts renders them; a test fails when a Dockerfile drifts).

/** A Node 24 application image: production dependencies, the listed sources, non-root. */
export interface NodeAppImage {
  /** Repository name, e.g. nightshift/task-runner. */
  name: string;
  /** Where the rendered Dockerfile is committed, relative to the repository root. */
  dockerfile: string;
  /** What the image is, for the Dockerfile's header. */
  title: string;
  /** Files and folders of the repository copied to /app, in this order. */
  sources: string[];
  /**
   * The image runs one JavaScript file bundled (rolldown) from a TypeScript entry instead of
   * the sources. Node's type stripping would keep a WebAssembly TypeScript parser in memory
   * (~20 MB RSS), and loading hundreds of modules one by one costs more than one file: the
   * idle operator takes 75 MB as tsc's output in dist/, 65 MB bundled (make bench, README).
   */
  bundle?: Bundle;
  entrypoint: string[];
  /** Environment beyond NODE_IMAGE.env. */
  env?: Record<string, string>;
  /** A shared library Node starts with (LD_PRELOAD): see PreloadedLibrary. */
  preload?: PreloadedLibrary;
  cmd?: string[];
  expose?: number[];
}

/**
 * A TypeScript entry bundled with its imports, node_modules included, into one ES module: the
 * image holds that file and no node_modules (the operator's image: 133 instead of 239 MB).
 */
export interface Bundle {
  /** The entry, relative to the repository root. */
  entry: string;
  /** Folders the entry imports from: what the bundle is built from. */
  inputs: string[];
  /** Where the image holds the bundle, relative to the workdir. */
  output: string;
}

/**
 * The rolldown command line for a bundle written to `outFile`; both image builds and
 * `make build` run it. Names are kept (--keepNames), so stack traces name their functions.
 */
export function bundleArgs(bundle: Bundle, outFile: string): string[] {
  return [
    bundle.entry,
    "--platform",
    "node",
    "--format",
    "esm",
    "--minify",
    "--keepNames",
    "--charset",
    "ascii",
    "--file",
    outFile,
  ];
}

/**
 * A shared library from a Debian bookworm package (the distroless base's release), put in
 * the image at `preloadPath` and loaded before Node through LD_PRELOAD.
 */
export interface PreloadedLibrary {
  debianPackage: string;
  /** Its file name in /usr/lib/<multiarch>/. */
  file: string;
}

/** Where an image holds its preloaded library: the same path on every architecture. */
export function preloadPath(library: PreloadedLibrary): string {
  return `/usr/local/lib/${library.file}`;
}

/** The image's whole environment: NODE_IMAGE.env, its own, and LD_PRELOAD for its library. */
export function imageEnv(image: NodeAppImage): Record<string, string> {
  return {
    ...NODE_IMAGE.env,
    ...(image.env ?? {}),
    ...(image.preload ? { LD_PRELOAD: preloadPath(image.preload) } : {}),
  };
}

/** Shared by every Node image: the distroless layout, so both builds give the same paths. */
export const NODE_IMAGE = {
  /** Docker's builder and runtime bases; the OCI build here takes Node from the npm `node` package. */
  dockerDepsBase: "node:24-bookworm-slim",
  dockerBase: "gcr.io/distroless/nodejs24-debian12:nonroot",
  nodePath: "/nodejs/bin/node",
  workdir: "/app",
  env: { NODE_ENV: "production" } as Record<string, string>,
  user: "65532:65532",
  /** Production dependencies only: no TypeScript, no test tools, no bundled Node. */
  npmCi: ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
};

export const images = {
  "task-runner": {
    name: "nightshift/task-runner",
    dockerfile: "task-runner/Dockerfile",
    title: "The shared Nightshift task runner.",
    sources: ["package.json", "crds/", "task-runner/"],
    entrypoint: [NODE_IMAGE.nodePath, "task-runner/main.ts"],
    cmd: ["list"],
  },
  operator: {
    name: "nightshift/operator",
    dockerfile: "operator/Dockerfile",
    title: "The Nightshift operator.",
    sources: ["package.json"],
    bundle: {
      entry: "operator/main.ts",
      inputs: ["crds/", "operator/"],
      output: "operator/main.js",
    },
    // Measured by make bench (README, Performance). glibc's malloc keeps the free pages inside
    // its heap (~15 MB with 1,000 tasks once idle, returned only by malloc_trim, which Node
    // never calls); jemalloc hands them back a second after they fall free, from one arena
    // and without per-thread caches (4 MB less when idle, no more CPU converging).
    // A 4 MB young generation scavenges a quarter as often as 1 MB: 8-18 % less CPU
    // converging 3,000 new tasks, ~3 MB more RSS. A fixed heap growing factor of 2 lets the old
    // generation double before the next full collection, where V8 picked ~1.2 for a heap this
    // small: converging 3,000 new tasks, 9 full collections instead of 19 and 9-11 % less CPU,
    // for ~14 MB more at the peak.
    preload: { debianPackage: "libjemalloc2", file: "libjemalloc.so.2" },
    env: {
      MALLOC_CONF:
        "background_thread:true,narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0",
    },
    entrypoint: [
      NODE_IMAGE.nodePath,
      "--max-semi-space-size=4",
      "--heap-growing-percent=100",
      "operator/main.js",
    ],
    expose: [8080],
  },
} satisfies Record<string, NodeAppImage>;

export type NodeImageName = keyof typeof images;

/** Tag of locally built images: never `latest`, so containerd never tries to pull them. */
export const LOCAL_TAG = "dev";
export const LOCAL_REGISTRY = "nightshift.local";

export function localReference(name: string): string {
  return `${LOCAL_REGISTRY}/${name.replace(/^nightshift\//, "")}:${LOCAL_TAG}`;
}
