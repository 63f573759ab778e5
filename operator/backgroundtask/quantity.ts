// Kubernetes resource quantities compared by amount, not spelling: the
// apiserver stores "0.5" as "500m" and "1e3" as "1k", so a desired value and
// the stored one are the same when they denote the same amount.

const DECIMAL_SUFFIX: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};
const BINARY_SUFFIX: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };

/** The amount as an exact fraction [numerator, denominator], or undefined if not a quantity. */
export function quantityFraction(text: string): [bigint, bigint] | undefined {
  const match =
    /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$/.exec(
      text.trim(),
    );
  if (!match) return undefined;
  const [, sign, number = "", exponent, suffix = ""] = match;
  const [whole = "", fraction = ""] = number.split(".");
  let numerator = BigInt(`${whole}${fraction}` || "0");
  let denominator = 10n ** BigInt(fraction.length);
  const power10 = exponent ? Number(exponent.slice(1)) : (DECIMAL_SUFFIX[suffix] ?? 0);
  const power2 = BINARY_SUFFIX[suffix] ?? 0;
  numerator *= 2n ** BigInt(power2);
  if (power10 >= 0) numerator *= 10n ** BigInt(power10);
  else denominator *= 10n ** BigInt(-power10);
  if (sign === "-") numerator = -numerator;
  return [numerator, denominator];
}

export function sameQuantity(a: unknown, b: unknown): boolean {
  if (typeof a !== "string" && typeof a !== "number") return false;
  if (typeof b !== "string" && typeof b !== "number") return false;
  const x = quantityFraction(String(a));
  const y = quantityFraction(String(b));
  return x !== undefined && y !== undefined && x[0] * y[1] === y[0] * x[1];
}
