import pino from "pino";
import { describe, expect, it } from "vitest";
import { Controller } from "./controller.ts";
import { OperatorMetrics } from "./metrics.ts";

describe("controller shutdown", () => {
  it("finishes only the reconciles in flight, and gives up on them after the grace", async () => {
    const started: string[] = [];
    let finishFirst = () => {};
    const controller = new Controller(
      "t",
      (key) => {
        started.push(key);
        return key === "a"
          ? new Promise((resolve) => {
              finishFirst = () => resolve(undefined);
            })
          : new Promise(() => {}); // hangs
      },
      2,
      pino({ level: "silent" }),
      new OperatorMetrics(),
    );
    for (const key of ["a", "b", "c", "d"]) controller.enqueue(key);
    controller.start();
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toEqual(["a", "b"]);
    const stopping = controller.stop(200);
    finishFirst();
    expect(await stopping).toBe(1); // "b" still hanging after the grace
    expect(started).toEqual(["a", "b"]); // "c" and "d" were never taken
    expect(controller.reconciled).toBe(1);
  });
});
