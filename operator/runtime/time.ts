// Timestamps in the two forms the Kubernetes API uses.

/** metav1.Time: RFC 3339 to the second, as status fields carry it. */
export function isoSeconds(date: Date = new Date()): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** metav1.MicroTime: RFC 3339 with microseconds, as Leases and events.k8s.io Events require. */
export function microTime(date: Date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}
