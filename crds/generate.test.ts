// The committed CRD must be exactly what the zod schema generates.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CRD_PATH, crdYaml, openApiSchema } from "./generate.ts";

describe("generated CRD", () => {
  it("matches the committed YAML (run `node crds/generate.ts` after changing the schema)", () => {
    expect(readFileSync(CRD_PATH, "utf8")).toBe(crdYaml());
  });

  it("is structural: every field typed and described, no unions or refs", () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, path: string) => {
      if (!node.type) missing.push(`${path}: no type`);
      if (path.split(".").length > 2 && !node.description && !path.endsWith("[]"))
        missing.push(`${path}: no description`);
      for (const key of ["anyOf", "oneOf", "allOf", "$ref"])
        if (key in node) missing.push(`${path}: ${key}`);
      for (const [name, child] of Object.entries(
        (node.properties as Record<string, Record<string, unknown>>) ?? {},
      ))
        walk(child, `${path}.${name}`);
      if (node.items) walk(node.items as Record<string, unknown>, `${path}[]`);
    };
    const schema = openApiSchema();
    walk((schema.properties as Record<string, Record<string, unknown>>).spec ?? {}, "spec");
    walk((schema.properties as Record<string, Record<string, unknown>>).status ?? {}, "status");
    expect(missing).toEqual([]);
    expect(parse(crdYaml()).spec.names.shortNames).toEqual(["bgt", "bgtask"]);
  });
});
