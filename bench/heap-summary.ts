// The biggest kinds of thing in a V8 heap snapshot: self size summed by
// constructor (objects) or by node type (strings, arrays, code), largest first.
export interface HeapRow {
  name: string;
  bytes: number;
  count: number;
}

export function summarizeHeapSnapshot(text: string, top: number): HeapRow[] {
  const snapshot = JSON.parse(text) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const rows = new Map<string, HeapRow>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] as number] ?? "?";
    const name =
      type === "object" || type === "closure"
        ? `${strings[nodes[i + nameAt] as number]} (${type})`
        : `(${type})`;
    const row = rows.get(name) ?? { name, bytes: 0, count: 0 };
    row.bytes += nodes[i + sizeAt] as number;
    row.count++;
    rows.set(name, row);
  }
  return [...rows.values()].sort((a, b) => b.bytes - a.bytes).slice(0, top);
}
