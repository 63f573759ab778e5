// Bundles an image's TypeScript entry into one JavaScript file with the repository's
// rolldown: for `make images`, and for `make build` (dist/, what the benchmark runs).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Bundle, bundleArgs, images } from "./definitions.ts";

const repo = fileURLToPath(new URL("../../", import.meta.url));

/** Runs the same command line as the Dockerfile's build stage. */
export function bundleInto(bundle: Bundle, outFile: string): void {
  execFileSync(
    process.execPath,
    [join(repo, "node_modules/rolldown/bin/cli.mjs"), ...bundleArgs(bundle, outFile)],
    { cwd: repo, stdio: ["ignore", "ignore", "inherit"] },
  );
}

// `make build`: the operator as its image holds it, under dist/.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { bundle } = images.operator;
  bundleInto(bundle, join(repo, "dist", bundle.output));
}
