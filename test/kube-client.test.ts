// The operator's HTTPS client against the real apiserver: what it keeps in memory between requests.
import { IncomingMessage } from "node:http";
import { queryObjects } from "node:v8";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeClient } from "../operator/runtime/kube-client.ts";

describe("kube client", () => {
  let client: KubeClient;
  beforeAll(() => {
    client = KubeClient.fromKubeconfig(inject("kubeconfigPath"));
  });
  afterAll(() => client.close());

  it("keeps no answered response alive on its keep-alive sockets", async () => {
    // Eight lists at once open eight sockets, which the agent keeps open for later requests.
    const lists = await Promise.all(
      Array.from({ length: 8 }, () => client.list("/api/v1/namespaces")),
    );
    expect(lists.every((list) => list.items.length > 0)).toBe(true);
    // The agent takes a socket back on the next tick after its response ends.
    await new Promise((resolve) => setImmediate(resolve));
    // After a full collection (queryObjects makes one), no response of them is left: a list page
    // held per socket is megabytes at 10,000 tasks.
    expect(queryObjects(IncomingMessage, { format: "count" })).toBe(0);
  });
});
