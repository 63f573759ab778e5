import { describe, expect, it } from "vitest";
import { OwnEchoes } from "./own-echoes.ts";

describe("own echoes", () => {
  it("recognise the event of our own write once, and nothing else", () => {
    const echoes = new OwnEchoes();
    echoes.expect("ns/a", "10");
    expect(echoes.isEcho("ns/b", "10")).toBe(false);
    expect(echoes.isEcho("ns/a", "10")).toBe(true);
    expect(echoes.isEcho("ns/a", "10")).toBe(false);
  });

  it("an event with another version is news, and ends the expectation", () => {
    const echoes = new OwnEchoes();
    echoes.expect("ns/a", "10");
    expect(echoes.isEcho("ns/a", "11")).toBe(false);
    expect(echoes.isEcho("ns/a", "10")).toBe(false);
  });

  it("keep a bounded number of expectations, forgetting the oldest", () => {
    const echoes = new OwnEchoes();
    for (let i = 0; i <= 1000; i++) echoes.expect(`ns/t-${i}`, String(i));
    expect(echoes.isEcho("ns/t-0", "0")).toBe(false);
    expect(echoes.isEcho("ns/t-1000", "1000")).toBe(true);
  });
});
