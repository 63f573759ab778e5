import { describe, expect, it } from "vitest";
import { WorkQueue } from "./workqueue.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("work queue", () => {
  it("holds a key at most once however often it is added", async () => {
    const queue = new WorkQueue("t");
    queue.add("a");
    queue.add("a");
    queue.add("b");
    expect(queue.length).toBe(2);
    expect(await queue.get()).toBe("a");
    expect(await queue.get()).toBe("b");
  });

  it("never hands a key to two workers at once; a re-add while processing runs after done()", async () => {
    const queue = new WorkQueue("t");
    queue.add("a");
    const first = await queue.get();
    queue.add("a");
    expect(queue.length).toBe(0); // deferred, not handed out
    let second: string | undefined;
    void queue.get().then((key) => {
      second = key;
    });
    await sleep(10);
    expect(second).toBeUndefined();
    queue.done(first as string);
    await sleep(0);
    expect(second).toBe("a");
  });

  it("backs off a failing key exponentially and forgets it on success", async () => {
    const queue = new WorkQueue("t", undefined, {
      baseDelayMs: 20,
      maxDelayMs: 1000,
      qps: 1000,
      burst: 1000,
    });
    const times: number[] = [];
    const start = Date.now();
    queue.add("a");
    for (let i = 0; i < 4; i++) {
      const key = (await queue.get()) as string;
      times.push(Date.now() - start);
      queue.addRateLimited(key);
      queue.done(key);
    }
    // 20, 40, 80 ms between attempts
    expect(times[1] as number).toBeGreaterThanOrEqual(18);
    expect((times[3] as number) - (times[2] as number)).toBeGreaterThanOrEqual(75);
    expect(queue.numRequeues("a")).toBe(4);
    queue.forget("a");
    expect(queue.numRequeues("a")).toBe(0);
    queue.shutdown();
  });

  it("keeps the earliest of several delayed adds", async () => {
    const queue = new WorkQueue("t");
    queue.addAfter("a", 500);
    queue.addAfter("a", 20);
    queue.addAfter("a", 300);
    const start = Date.now();
    expect(await queue.get()).toBe("a");
    expect(Date.now() - start).toBeLessThan(250);
    queue.shutdown();
  });

  it("hands out no more keys once shut down, even with keys queued", async () => {
    const queue = new WorkQueue("t");
    queue.add("a");
    queue.add("b");
    expect(await queue.get()).toBe("a");
    queue.shutdown();
    expect(await queue.get()).toBeUndefined();
    queue.done("a");
    queue.add("c");
    expect(await queue.get()).toBeUndefined();
  });

  it("releases waiting workers on shutdown", async () => {
    const queue = new WorkQueue("t");
    const waiting = queue.get();
    queue.shutdown();
    expect(await waiting).toBeUndefined();
  });
});
