// Code-unit order for names and RFC 3339 timestamps: deterministic on every
// machine, and no ICU collation (localeCompare) on the hot path, whose data
// costs megabytes of resident memory to load.
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
