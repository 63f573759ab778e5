// Which images a custom container task may run: a cluster admin's decision,
// made with the operator's --allowed-image-prefixes. The runner image is always
// allowed; any other image must start with an allowed prefix at a boundary, so
// "registry.example/batch" allows "registry.example/batch/job:1" but not
// "registry.example/batch-evil/job". Images are compared as written.

const BOUNDARIES = ["/", ":", "@"];

export function imageAllowed(image: string, runnerImage: string, prefixes: string[]): boolean {
  if (image === runnerImage) return true;
  return prefixes.some((prefix) => {
    if (!image.startsWith(prefix)) return false;
    if (image.length === prefix.length) return true;
    const last = prefix.at(-1) ?? "";
    return BOUNDARIES.includes(last) || BOUNDARIES.includes(image.charAt(prefix.length));
  });
}
