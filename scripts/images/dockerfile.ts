// Renders an image definition as the Dockerfile users build with `docker build`.
import {
  type Bundle,
  bundleArgs,
  imageEnv,
  NODE_IMAGE,
  type NodeAppImage,
  preloadPath,
} from "./definitions.ts";

export function renderDockerfile(image: NodeAppImage): string {
  const json = (values: string[]) => `[${values.map((v) => JSON.stringify(v)).join(", ")}]`;
  const lines = [
    `# ${image.title} Build from the repository root:`,
    `#   docker build -f ${image.dockerfile} -t ${image.name}:0.1.0 .`,
    "# Generated from scripts/images/definitions.ts (`make images` builds the same",
    "# image without Docker); edit that file and run `make dockerfiles`.",
    ...depsStage(image),
    ...(image.bundle ? bundleStage(image.bundle) : []),
    `FROM ${NODE_IMAGE.dockerBase}`,
    `WORKDIR ${NODE_IMAGE.workdir}`,
    ...Object.entries(imageEnv(image)).map(([k, v]) => `ENV ${k}=${v}`),
    ...(image.bundle ? [] : [`COPY --from=deps ${NODE_IMAGE.workdir}/node_modules ./node_modules`]),
    ...(image.preload
      ? [`COPY --from=deps ${preloadPath(image.preload)} ${preloadPath(image.preload)}`]
      : []),
    ...image.sources.map((s) => `COPY ${s} ./${s.endsWith("/") ? s : ""}`),
    ...(image.bundle
      ? [`COPY --from=build ${bundledFile(image.bundle)} ./${image.bundle.output}`]
      : []),
    "# Non-root, and nothing is written inside the image: works with readOnlyRootFilesystem.",
    `USER ${NODE_IMAGE.user}`,
    ...(image.expose ?? []).map((port) => `EXPOSE ${port}`),
    `ENTRYPOINT ${json(image.entrypoint)}`,
    ...(image.cmd ? [`CMD ${json(image.cmd)}`] : []),
    "",
  ];
  return lines.join("\n");
}

// `make dockerfiles`: writes every image's Dockerfile from its definition.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { writeFileSync } = await import("node:fs");
  const { images } = await import("./definitions.ts");
  const root = new URL("../../", import.meta.url);
  for (const image of Object.values(images)) {
    writeFileSync(new URL(image.dockerfile, root), renderDockerfile(image));
    console.log(`wrote ${image.dockerfile}`);
  }
}

/**
 * The stage the final image copies from: production node_modules for an image that runs its
 * sources (a bundle holds its dependencies), and the preloaded library. None when neither.
 */
function depsStage(image: NodeAppImage): string[] {
  const installs = [
    ...(image.bundle
      ? []
      : [
          "COPY package.json package-lock.json ./",
          `RUN ${NODE_IMAGE.npmCi.join(" ")} && npm cache clean --force`,
        ]),
    ...(image.preload
      ? [
          `RUN apt-get update && apt-get install -y --no-install-recommends ${image.preload.debianPackage} \\`,
          `  && cp /usr/lib/*-linux-gnu/${image.preload.file} ${preloadPath(image.preload)}`,
        ]
      : []),
  ];
  if (installs.length === 0) return [];
  return [
    `FROM ${NODE_IMAGE.dockerDepsBase} AS deps`,
    `WORKDIR ${NODE_IMAGE.workdir}`,
    ...installs,
    "",
  ];
}

/** Where the build stage writes the bundle. */
function bundledFile(bundle: Bundle): string {
  return `${NODE_IMAGE.workdir}/dist/${bundle.output}`;
}

/** A stage bundling the image's TypeScript entry (rolldown, a dev dependency) into dist/. */
function bundleStage(bundle: Bundle): string[] {
  return [
    `FROM ${NODE_IMAGE.dockerDepsBase} AS build`,
    `WORKDIR ${NODE_IMAGE.workdir}`,
    "COPY package.json package-lock.json ./",
    "RUN npm ci --ignore-scripts --no-audit --no-fund",
    ...bundle.inputs.map((input) => `COPY ${input} ./${input}`),
    `RUN npx rolldown ${bundleArgs(bundle, bundledFile(bundle)).join(" ")}`,
    "",
  ];
}
