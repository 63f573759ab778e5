// The watch events that only echo a write of ours. A CronJob the operator has
// just applied comes back as a watch event carrying the resourceVersion the
// apply answered; reconciling its task for it would decide nothing new (the
// plan that applied it already wrote the task's status), and at 10,000 new
// tasks it was half of all reconciles.

/** Expected echoes kept at most; a forgotten one costs one reconcile, nothing else. */
const KEPT = 1000;

export class OwnEchoes {
  private readonly expected = new Map<string, string>();

  /** Our write of `key` answered `resourceVersion`. */
  expect(key: string, resourceVersion: string | undefined): void {
    if (!resourceVersion) return;
    this.expected.delete(key);
    this.expected.set(key, resourceVersion);
    if (this.expected.size > KEPT)
      this.expected.delete(this.expected.keys().next().value as string);
  }

  /** True once, for the event that carries exactly what our last write of `key` answered. */
  isEcho(key: string, resourceVersion: string | undefined): boolean {
    const expected = this.expected.get(key);
    if (expected === undefined) return false;
    this.expected.delete(key); // any later event of this object is someone else's news
    return expected === resourceVersion;
  }
}
