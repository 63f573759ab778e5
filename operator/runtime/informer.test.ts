import { describe, expect, it } from "vitest";
import { cacheHasCaughtUp } from "./informer.ts";

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
