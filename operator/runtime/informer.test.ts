import { describe, expect, it } from "vitest";
import { cacheHasCaughtUp, cacheHoldsOurWrite } from "./informer.ts";

const at = (resourceVersion: string) => ({ metadata: { name: "t", resourceVersion } });

describe("cacheHasCaughtUp", () => {
  it("waits while the cache still holds a version one of our writes replaced", () => {
    expect(cacheHasCaughtUp(at("7"), new Set(["7"]))).toBe(false);
    expect(cacheHasCaughtUp(at("7"), new Set(["7", "9"]))).toBe(false);
  });

  it("has caught up once the cache holds any version our writes did not replace", () => {
    expect(cacheHasCaughtUp(at("8"), new Set(["7"]))).toBe(true);
  });

  it("has caught up when the object is gone from the cache", () => {
    expect(cacheHasCaughtUp(undefined, new Set(["7"]))).toBe(true);
  });
});

describe("cacheHoldsOurWrite", () => {
  it("holds our write when the cache has exactly its version", () => {
    expect(cacheHoldsOurWrite(at("9"), at("9"))).toBe(true);
  });

  it("does not when someone else's version came between our patches", () => {
    // Hold answered 8, release answered 9; the Job controller's 7 came first. Dropping our copy
    // at 7 would show the Job held but not released once 8 arrives, and send the release again.
    expect(cacheHoldsOurWrite(at("7"), at("9"))).toBe(false);
    expect(cacheHoldsOurWrite(at("8"), at("9"))).toBe(false);
  });

  it("does not when the object is not cached", () => {
    expect(cacheHoldsOurWrite(undefined, at("9"))).toBe(false);
  });
});
