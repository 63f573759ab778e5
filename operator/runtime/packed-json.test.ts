import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { PackedJson } from "./packed-json.ts";

const cronJob = (name: string, env: Record<string, string>) => ({
  metadata: {
    name,
    namespace: "team-a",
    labels: { "app.kubernetes.io/managed-by": "nightshift-operator", "nightshift.dev/task": name },
  },
  spec: {
    schedule: "40 13 1 1 *",
    jobTemplate: {
      spec: {
        template: {
          spec: {
            containers: [
              {
                name: "task",
                image: "nightshift/task-runner:1",
                env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
              },
            ],
          },
        },
      },
    },
  },
});

describe("PackedJson", () => {
  it("gives back an equal object, including text outside ASCII", () => {
    const packer = new PackedJson<unknown>();
    const first = cronJob("nightly-digest", { GREETING: "Grüße, 夜班 🌙" });
    const second = cronJob("backup", { NOTE: "", EMPTY: "\u0000\uffff" });
    const packedFirst = packer.pack(first);
    const packedSecond = packer.pack(second);
    expect(packer.unpack(packedSecond)).toEqual(second);
    expect(packer.unpack(packedFirst)).toEqual(first);
  });

  it("gives back objects whose packed and unpacked forms span many output chunks", () => {
    const packer = new PackedJson<unknown>();
    packer.pack(cronJob("task-0", { NIGHTSHIFT_TASK: "http.request" }));
    // Random text does not compress: ~20 KB of JSON that packs to more than 1 KB as well.
    const noise = (i: number) => randomBytes(48).toString("base64") + i;
    const large = cronJob(
      "large",
      Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`K${i}`, noise(i)])),
    );
    const packed = packer.pack(large);
    expect(packed.length).toBeGreaterThan(4_000);
    expect(packer.unpack(packed)).toEqual(large);
  });

  it("packs objects like the first one to a fraction of their JSON", () => {
    const packer = new PackedJson<unknown>();
    packer.pack(cronJob("task-0", { NIGHTSHIFT_TASK: "http.request" }));
    const another = cronJob("task-1234", { NIGHTSHIFT_TASK: "http.request" });
    const packed = packer.pack(another);
    expect(packed.length).toBeLessThan(JSON.stringify(another).length / 4);
    expect(packer.unpack(packed)).toEqual(another);
  });

  it("hands out a new object on every unpack, so a reader cannot alter what is held", () => {
    const packer = new PackedJson<{ metadata: { name: string } }>();
    const packed = packer.pack({ metadata: { name: "a" } });
    const read = packer.unpack(packed);
    read.metadata.name = "changed";
    expect(packer.unpack(packed).metadata.name).toBe("a");
  });
});
