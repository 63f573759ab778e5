// Derives the BackgroundTask CRD from the zod schema. `node crds/generate.ts`
// rewrites the committed YAML; a test fails when the two drift apart.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { z } from "zod";
import { backgroundTask, GROUP, KIND, PLURAL, VERSION } from "./backgroundtask.ts";

export const CRD_PATH = fileURLToPath(
  new URL("./nightshift.dev_backgroundtasks.yaml", import.meta.url),
);

/** The chart carries the same CRD (charts/nightshift templates it); a test fails if they differ. */
export const CHART_CRD_PATH = fileURLToPath(
  new URL("../charts/nightshift/files/crds/nightshift.dev_backgroundtasks.yaml", import.meta.url),
);

type JsonSchema = { [key: string]: unknown };

/** Makes zod's JSON Schema a structural CRD schema: no $schema, no additionalProperties beside properties or preserve-unknown-fields, no ±2^53 bounds zod adds to plain ints. */
function structural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(structural);
  if (!node || typeof node !== "object") return node;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node as JsonSchema)) {
    if (key === "$schema") continue;
    out[key] =
      key === "x-kubernetes-validations" || key === "default" || key === "enum"
        ? value
        : structural(value);
  }
  if ("properties" in out || out["x-kubernetes-preserve-unknown-fields"] === true)
    delete out.additionalProperties;
  if (out.additionalProperties === false) delete out.additionalProperties;
  if (out.properties && Object.keys(out.properties as object).length === 0) delete out.properties;
  if (out["x-kubernetes-preserve-unknown-fields"] === true) out.type = "object";
  if (out.minimum === Number.MIN_SAFE_INTEGER) delete out.minimum;
  if (out.maximum === Number.MAX_SAFE_INTEGER) delete out.maximum;
  for (const forbidden of ["anyOf", "oneOf", "allOf", "$ref", "$defs"]) {
    if (forbidden in out)
      throw new Error(
        `schema is not structural: ${forbidden} in ${JSON.stringify(out).slice(0, 200)}`,
      );
  }
  return out;
}

export function openApiSchema(): JsonSchema {
  const schema = z.toJSONSchema(backgroundTask, {
    target: "openapi-3.0",
    io: "input",
    unrepresentable: "throw",
    reused: "inline",
  });
  return structural(schema) as JsonSchema;
}

const readyMessage = '.status.conditions[?(@.type=="Ready")].message';

export function crdObject() {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: "backgroundtask",
        shortNames: ["bgt", "bgtask"],
        categories: ["nightshift"],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            {
              name: "Task",
              type: "string",
              jsonPath: ".status.task",
              description: "Catalogue task type or 'container'.",
            },
            {
              name: "Schedule",
              type: "string",
              jsonPath: ".status.schedule",
              description: "Schedule in effect, H expanded.",
            },
            { name: "Status", type: "string", jsonPath: ".status.phase", description: "Phase." },
            {
              name: "Last Success",
              type: "date",
              jsonPath: ".status.lastSuccessTime",
              description: "Last successful run.",
            },
            {
              name: "Failures",
              type: "integer",
              jsonPath: ".status.consecutiveFailures",
              description: "Consecutive failed runs.",
            },
            {
              name: "Next Run",
              type: "string",
              jsonPath: ".status.nextScheduleTime",
              description: "Next scheduled run.",
            },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
            {
              name: "Time Zone",
              type: "string",
              jsonPath: ".status.timeZone",
              priority: 1,
              description: "Time zone of the schedule.",
            },
            {
              name: "Runs",
              type: "integer",
              jsonPath: ".status.runs.total",
              priority: 1,
              description: "Finished runs.",
            },
            {
              name: "Failed",
              type: "integer",
              jsonPath: ".status.runs.failed",
              priority: 1,
              description: "Failed runs.",
            },
            {
              name: "CronJob",
              type: "string",
              jsonPath: ".status.cronJobName",
              priority: 1,
              description: "CronJob running the task.",
            },
            {
              name: "Message",
              type: "string",
              jsonPath: readyMessage,
              priority: 1,
              description: "Ready condition message.",
            },
          ],
          schema: { openAPIV3Schema: openApiSchema() },
        },
      ],
    },
  };
}

export function crdYaml(): string {
  return `# Generated by crds/generate.ts from crds/backgroundtask.ts. Do not edit.\n${stringify(crdObject(), { lineWidth: 0 })}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const path of [CRD_PATH, CHART_CRD_PATH]) {
    writeFileSync(path, crdYaml());
    console.log(`wrote ${path}`);
  }
}
