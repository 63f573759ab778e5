// The informer's packed cache against the real apiserver: paged lists, watch
// events, and a relist after a gap that reports exactly what changed.
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Informer } from "../operator/runtime/informer.ts";
import { KubeClient, type KubeObject } from "../operator/runtime/kube-client.ts";
import { createNamespace, eventually } from "./support/cluster.ts";

type ConfigMap = KubeObject & { data?: Record<string, string> };

describe("informer with a packed cache", () => {
  let ns = "";
  let client: KubeClient;
  const path = () => `/api/v1/namespaces/${ns}/configmaps`;
  const configMap = (name: string, note: string) => ({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, namespace: ns, labels: { "informer-test": "yes" } },
    data: { note, schedule: "H H * * *" },
  });

  /** An informer of this namespace's labelled ConfigMaps, with a packed cache. */
  const labelledInformer = (options: { pageSize?: number } = {}) =>
    new Informer<ConfigMap>(client, {
      name: "configmaps",
      path: path(),
      labelSelector: "informer-test=yes",
      compact: true,
      log: pino({ level: "silent" }),
      ...options,
    });

  beforeAll(async () => {
    ns = await createNamespace("informer");
    client = KubeClient.fromKubeconfig(inject("kubeconfigPath"));
  });
  afterAll(() => client.close());

  it("lists in pages, follows changes, and relists to exactly the changes it missed", async () => {
    for (let i = 0; i < 5; i++)
      await client.create(path(), configMap(`cm-${i}`, `Nachtschicht ${i} — 夜班 🌙`));
    await client.create(path(), {
      ...configMap("unlabelled", "x"),
      metadata: { name: "unlabelled" },
    });
    const events: string[] = [];
    const informer = labelledInformer({ pageSize: 2 });
    informer.addHandlers({
      onAdd: (o) => events.push(`add ${o.metadata.name}`),
      onUpdate: (o) => events.push(`update ${o.metadata.name} ${o.data?.note}`),
      onDelete: (o) => events.push(`delete ${o.metadata.name}`),
    });
    informer.start();
    await informer.waitForSync();
    expect(events.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `add cm-${i}`));
    expect(informer.get(`${ns}/cm-3`)?.data).toEqual({
      note: "Nachtschicht 3 — 夜班 🌙",
      schedule: "H H * * *",
    });
    expect(informer.get(`${ns}/unlabelled`)).toBeUndefined();

    // A reader's copy is its own: changing it changes nothing held.
    const copy = informer.get(`${ns}/cm-0`) as ConfigMap;
    (copy.data as Record<string, string>).note = "changed by a reader";
    expect(informer.get(`${ns}/cm-0`)?.data?.note).toBe("Nachtschicht 0 — 夜班 🌙");

    events.length = 0;
    await client.mergePatch(`${path()}/cm-1`, { data: { note: "watched" } });
    await eventually(() => (events.includes("update cm-1 watched") ? true : undefined), {
      what: "the watch event for cm-1",
    });

    // Changes while the informer is stopped reach it as events when it lists again.
    informer.stop();
    events.length = 0;
    await client.delete(`${path()}/cm-0`);
    await client.delete(`${path()}/cm-4`);
    await client.mergePatch(`${path()}/cm-2`, { data: { note: "missed" } });
    await client.create(path(), configMap("cm-5", "new"));
    informer.start();
    await eventually(() => (events.length >= 4 ? true : undefined), {
      what: "the relist's events",
    });
    expect(events.sort()).toEqual(["add cm-5", "delete cm-0", "delete cm-4", "update cm-2 missed"]);
    expect([...informer.keys()].sort()).toEqual(
      ["cm-1", "cm-2", "cm-3", "cm-5"].map((n) => `${ns}/${n}`),
    );
    expect(informer.get(`${ns}/cm-2`)?.data?.note).toBe("missed");
    informer.stop();
  });

  it("shows our own write, by key and by index, until the watch brings it", async () => {
    await client.create(path(), configMap("own", "before"));
    const informer = labelledInformer();
    informer.addIndex("schedule", (o) => [o.data?.schedule ?? ""]);
    informer.start();
    await informer.waitForSync();
    const cached = informer.get(`${ns}/own`) as ConfigMap;
    // Stopped, the informer cannot hear of the write: only recordWrite can tell it.
    informer.stop();
    const written = await client.mergePatch<ConfigMap>(`${path()}/own`, {
      data: { note: "after" },
    });
    expect(informer.get(`${ns}/own`)?.data?.note).toBe("before");
    informer.recordWrite(written, cached.metadata.resourceVersion ?? "");
    expect(informer.get(`${ns}/own`)?.data?.note).toBe("after");
    const indexed = informer
      .byIndex("schedule", "H H * * *")
      .find((o) => o.metadata.name === "own");
    expect(indexed?.data?.note).toBe("after");
    // Someone else's later change wins once the watch delivers it.
    await client.mergePatch(`${path()}/own`, { data: { note: "theirs" } });
    informer.start();
    await eventually(
      () => (informer.get(`${ns}/own`)?.data?.note === "theirs" ? true : undefined),
      { what: "the relist's version of own" },
    );
    informer.stop();
  });

  it("lets go of our own write once a list or the watch brings it, without anyone reading it", async () => {
    await client.create(path(), configMap("held", "before"));
    const updates: string[] = [];
    const informer = labelledInformer();
    informer.addHandlers({
      onUpdate: (o) => updates.push(`${o.metadata.name} ${o.metadata.resourceVersion}`),
    });
    informer.start();
    await informer.waitForSync();
    const before = informer.get(`${ns}/held`) as ConfigMap;

    // The answer first: the informer holds our write until the relist brings it.
    informer.stop();
    const first = await client.mergePatch<ConfigMap>(`${path()}/held`, { data: { note: "1" } });
    informer.recordWrite(first, before.metadata.resourceVersion ?? "");
    expect(informer.ownWritesHeld).toBe(1);
    informer.start();
    await eventually(
      () => (updates.includes(`held ${first.metadata.resourceVersion}`) ? true : undefined),
      { what: "the relist's update of held" },
    );
    expect(informer.ownWritesHeld).toBe(0);

    // The watch first: an answer that arrives after its own event is not held at all.
    const second = await client.mergePatch<ConfigMap>(`${path()}/held`, { data: { note: "2" } });
    await eventually(
      () => (updates.includes(`held ${second.metadata.resourceVersion}`) ? true : undefined),
      { what: "the watch's update of held" },
    );
    informer.recordWrite(second, first.metadata.resourceVersion ?? "");
    expect(informer.ownWritesHeld).toBe(0);
    expect(informer.get(`${ns}/held`)?.data?.note).toBe("2");
    informer.stop();
  });

  it("holds unpacked what a write will soon replace, and still gives every reader its own copy", async () => {
    await client.create(path(), configMap("pending", "awaits a write"));
    await client.create(path(), configMap("settled", "done"));
    const olds: string[] = [];
    const informer = new Informer<ConfigMap>(client, {
      name: "configmaps",
      path: path(),
      labelSelector: "informer-test=yes",
      compact: true,
      keepUnpacked: (o) => o.data?.note === "awaits a write",
      log: pino({ level: "silent" }),
    });
    informer.addHandlers({
      onUpdate: (o, old) => olds.push(`${o.metadata.name} was ${old.data?.note}`),
    });
    informer.start();
    await informer.waitForSync();
    expect(informer.unpackedHeld).toBe(1);

    const copy = informer.get(`${ns}/pending`) as ConfigMap;
    (copy.data as Record<string, string>).note = "changed by a reader";
    expect(informer.get(`${ns}/pending`)?.data?.note).toBe("awaits a write");

    await client.mergePatch(`${path()}/pending`, { data: { note: "written" } });
    await eventually(() => (olds.length ? true : undefined), { what: "the update of pending" });
    expect(olds).toEqual(["pending was awaits a write"]);
    expect(informer.unpackedHeld).toBe(0);
    expect(informer.get(`${ns}/pending`)?.data?.note).toBe("written");
    expect(informer.get(`${ns}/settled`)?.data?.note).toBe("done");
    informer.stop();
  });
});
