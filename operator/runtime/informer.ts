// A list-watch cache that never gives up: it relists on 410 Gone, re-watches
// from the last resourceVersion when a stream ends, restarts with exponential
// backoff after any error, and aborts a stream that went silent (no event or
// bookmark) for too long. Objects are cached trimmed (managedFields dropped,
// plus whatever `transform` removes) and, with `compact`, packed (packed-json.ts:
// deflated JSON, ~15× smaller than the text and ~25× smaller than the object
// graph); readers get a fresh copy, so no reader can alter the cache. Event
// handlers get the objects themselves (an object held unpacked is the cached
// one) and must only read them.
import type { Logger } from "pino";
import {
  type KubeClient,
  type KubeObject,
  METADATA_ACCEPT,
  METADATA_LIST_ACCEPT,
} from "./kube-client.ts";
import { PackedJson } from "./packed-json.ts";

export interface InformerHandlers<T extends KubeObject> {
  onAdd?(object: T): void;
  onUpdate?(object: T, old: T): void;
  onDelete?(object: T): void;
}

export interface InformerOptions<T extends KubeObject> {
  name: string;
  /** Collection path, e.g. /apis/batch/v1/jobs or /apis/batch/v1/namespaces/x/jobs. */
  path: string;
  labelSelector?: string;
  /** Ask for PartialObjectMetadata instead of whole objects. */
  metadataOnly?: boolean;
  transform?: (object: KubeObject) => T;
  /** Hold objects packed (deflated JSON) and unpack them on read: far less memory, some CPU per read. */
  compact?: boolean;
  /**
   * With `compact`: objects a write of ours will replace soon, held unpacked until then (at most
   * UNPACKED_MAX), because packing a version nobody reads packed is wasted work.
   */
  keepUnpacked?: (object: T) => boolean;
  pageSize?: number;
  idleTimeoutMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log: Logger;
}

export function objectKey(object: KubeObject): string {
  return object.metadata.namespace
    ? `${object.metadata.namespace}/${object.metadata.name}`
    : object.metadata.name;
}

function trim(object: KubeObject): KubeObject {
  if (object.metadata.managedFields !== undefined) delete object.metadata.managedFields;
  const annotations = object.metadata.annotations;
  if (annotations?.["kubectl.kubernetes.io/last-applied-configuration"] !== undefined) {
    delete annotations["kubectl.kubernetes.io/last-applied-configuration"];
  }
  return object;
}

/**
 * Whether `get` should stop showing our write: the cache holds none of the versions our writes
 * replaced (or the object is gone). Read lazily, because a version someone else wrote between
 * our unconditional patches also passes.
 */
export function cacheHasCaughtUp(
  cached: KubeObject | undefined,
  replaced: ReadonlySet<string>,
): boolean {
  return !cached || !replaced.has(cached.metadata.resourceVersion ?? "");
}

/**
 * Whether the cache holds exactly our latest write, so our copy of it can go at once. Only the
 * write's own version proves that: a version someone else wrote in between does not.
 */
export function cacheHoldsOurWrite(cached: KubeObject | undefined, written: KubeObject): boolean {
  const version = written.metadata.resourceVersion;
  return (
    cached !== undefined && version !== undefined && cached.metadata.resourceVersion === version
  );
}

/** At most this many objects held unpacked (InformerOptions.keepUnpacked): the oldest are packed first. */
const UNPACKED_MAX = 2_000;

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T | string>();
  /** Keys of a compact informer whose objects are held unpacked (keepUnpacked), oldest first. */
  private readonly unpacked = new Set<string>();
  private readonly packer = new PackedJson<T>();
  private readonly handlers: InformerHandlers<T>[] = [];
  private readonly ownWrites = new Map<string, { object: T; replaced: Set<string>; at: number }>();
  private readonly indexes = new Map<
    string,
    {
      indexOf: (object: T) => string[];
      index: Map<string, Set<string>>;
      valuesOf: Map<string, string[]>;
    }
  >();
  private resourceVersion = "";
  private abort?: AbortController;
  private idleTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;
  private stopped = false;
  /** Each start begins a new run; lists and watches of an earlier run are ignored. */
  private run = 0;
  private synced = false;
  private syncWaiters: Array<() => void> = [];

  private readonly client: KubeClient;
  private readonly options: InformerOptions<T>;

  constructor(client: KubeClient, options: InformerOptions<T>) {
    this.client = client;
    this.options = options;
  }

  /** Maintains a secondary index: keys of cached objects by the values `indexOf` returns. */
  addIndex(name: string, indexOf: (object: T) => string[]): void {
    const index = new Map<string, Set<string>>();
    this.indexes.set(name, { indexOf, index, valuesOf: new Map() });
    for (const key of this.store.keys()) this.indexAdd(name, key, this.peek(key) as T);
  }

  byIndex(name: string, value: string): T[] {
    const keys = this.indexes.get(name)?.index.get(value);
    if (!keys) return [];
    const out: T[] = [];
    for (const key of keys) {
      const object = this.get(key); // with our own newer writes, as get gives them
      if (object) out.push(object);
    }
    return out;
  }

  /** A copy for readers of a compact informer, so none can alter the cache; the object itself otherwise. */
  private decode(stored: T | string): T {
    if (typeof stored === "string") return this.packer.unpack(stored);
    return this.options.compact ? structuredClone(stored) : stored;
  }

  /** The stored object, without a copy when it is not packed: for the informer's own reads and for the version it is replacing. */
  private peek(key: string): T | undefined {
    const stored = this.store.get(key);
    return typeof stored === "string" ? this.packer.unpack(stored) : stored;
  }

  private indexAdd(name: string, key: string, object: T): void {
    const entry = this.indexes.get(name);
    if (!entry) return;
    const values = entry.indexOf(object);
    entry.valuesOf.set(key, values);
    for (const value of values) {
      const set = entry.index.get(value) ?? new Set<string>();
      entry.index.set(value, set);
      set.add(key);
    }
  }

  private indexRemove(key: string): void {
    for (const entry of this.indexes.values()) {
      for (const value of entry.valuesOf.get(key) ?? []) {
        const set = entry.index.get(value);
        set?.delete(key);
        if (set?.size === 0) entry.index.delete(value);
      }
      entry.valuesOf.delete(key);
    }
  }

  private storeSet(key: string, object: T): void {
    this.indexRemove(key);
    this.unpacked.delete(key);
    if (!this.options.compact) this.store.set(key, object);
    else if (!this.options.keepUnpacked?.(object)) this.store.set(key, this.packer.pack(object));
    else {
      this.store.set(key, object);
      this.unpacked.add(key); // last: the set stays oldest first
      if (this.unpacked.size > UNPACKED_MAX) {
        const oldest = this.unpacked.values().next().value as string;
        this.store.set(oldest, this.packer.pack(this.store.get(oldest) as T));
        this.unpacked.delete(oldest);
      }
    }
    for (const name of this.indexes.keys()) this.indexAdd(name, key, object);
    // Dropping our copy when the watch brings our write, not at the next get, keeps a quiet
    // informer from holding an unpacked object per written key (2,654 of 3,000 tasks after
    // converging): a converged task is not read again until something changes.
    const own = this.ownWrites.get(key);
    if (own && cacheHoldsOurWrite(object, own.object)) this.ownWrites.delete(key);
  }

  private storeDelete(key: string): void {
    this.indexRemove(key);
    this.store.delete(key);
    this.unpacked.delete(key);
    this.ownWrites.delete(key);
  }

  addHandlers(handlers: InformerHandlers<T>): void {
    this.handlers.push(handlers);
  }

  /** The cached object, or our own newer write of it while the watch has not delivered it yet. */
  get(key: string): T | undefined {
    const stored = this.peek(key);
    const own = this.ownWrites.get(key);
    if (own) {
      if (!cacheHasCaughtUp(stored, own.replaced)) return own.object;
      this.ownWrites.delete(key);
    }
    // Unpacked just now, it is the reader's own already; held unpacked, it is the cached object.
    return stored !== undefined && stored === this.store.get(key) ? this.decode(stored) : stored;
  }

  /**
   * Makes `get` return what a write of ours answered until the watch delivers
   * it, so the next reconcile does not work from (and conflict on) the version
   * it just replaced. Versions are never compared, only remembered.
   */
  recordWrite(object: T, replacedResourceVersion: string): void {
    const key = objectKey(object);
    const replaced = this.ownWrites.get(key)?.replaced ?? new Set<string>();
    replaced.add(replacedResourceVersion);
    this.ownWrites.delete(key); // re-inserted last, so the map stays ordered by time
    // The watch can bring our write before its answer arrives; then there is nothing to hold.
    if (cacheHoldsOurWrite(this.peek(key), object)) return;
    this.ownWrites.set(key, { object: this.transform(object), replaced, at: Date.now() });
    // A safety net: entries whose key the watch never brings again (never read again either).
    const cutoff = Date.now() - 60_000;
    for (const [k, entry] of this.ownWrites) {
      if (entry.at >= cutoff) break; // insertion order: the rest are newer
      this.ownWrites.delete(k);
    }
  }

  /** How many objects are held unpacked because a write will soon replace them (keepUnpacked). */
  get unpackedHeld(): number {
    return this.unpacked.size;
  }

  /** How many of our own writes the informer still holds because the watch has not brought them. */
  get ownWritesHeld(): number {
    return this.ownWrites.size;
  }

  list(): T[] {
    return [...this.store.values()].map((stored) => this.decode(stored));
  }

  /** Keys of every cached object, without reading the objects. */
  keys(): IterableIterator<string> {
    return this.store.keys();
  }

  /** Whether an object is cached under `key`, without reading it. */
  has(key: string): boolean {
    return this.store.has(key);
  }

  get size(): number {
    return this.store.size;
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  start(): void {
    this.stopped = false;
    void this.listAndWatch(++this.run);
  }

  stop(): void {
    this.stopped = true;
    this.run++; // a list or watch still in flight belongs to the stopped run: it must not touch the store
    clearTimeout(this.idleTimer);
    clearTimeout(this.retryTimer);
    this.abort?.abort();
  }

  private transform(object: KubeObject): T {
    const trimmed = trim(object);
    return (this.options.transform ? this.options.transform(trimmed) : trimmed) as T;
  }

  private async listAndWatch(run: number): Promise<void> {
    if (this.stopped || run !== this.run) return;
    try {
      if (!(await this.relist(run))) return;
      this.failures = 0;
      this.watch(run);
    } catch (error) {
      this.scheduleRestart(run, error);
    }
  }

  /** False when the run was superseded (stopped, or started again) before the list finished. */
  private async relist(run: number): Promise<boolean> {
    // Page by page into the store: a relist of 10,000 objects never holds them all as objects.
    // A relist that fails half-way leaves newer objects behind, never older ones; the next one finishes.
    const listed = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion = "";
    do {
      const query: Record<string, string> = { limit: String(this.options.pageSize ?? 500) };
      if (this.options.labelSelector) query.labelSelector = this.options.labelSelector;
      if (continueToken) query.continue = continueToken;
      const page = await this.client.list<KubeObject>(
        this.options.path,
        query,
        this.options.metadataOnly ? METADATA_LIST_ACCEPT : undefined,
      );
      if (run !== this.run) return false;
      for (const item of page.items ?? []) {
        const object = this.transform(item);
        const key = objectKey(object);
        listed.add(key);
        const old = this.peek(key);
        if (old?.metadata.resourceVersion === object.metadata.resourceVersion) continue;
        this.storeSet(key, object);
        if (!old) this.emit("add", object);
        else this.emit("update", object, old);
      }
      continueToken = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);
    // Whatever the list no longer has was deleted while we were not watching.
    for (const key of [...this.store.keys()]) {
      if (!listed.has(key)) {
        const old = this.peek(key) as T;
        this.storeDelete(key);
        this.emit("delete", old);
      }
    }
    this.resourceVersion = resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
    this.options.log.debug({ informer: this.options.name, count: this.store.size }, "listed");
    return true;
  }

  private watch(run: number): void {
    if (this.stopped || run !== this.run) return;
    const query: Record<string, string> = {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: "true",
      // Spread stream renewals so thousands of operators do not reconnect at once.
      timeoutSeconds: String(240 + Math.floor(Math.random() * 120)),
    };
    if (this.options.labelSelector) query.labelSelector = this.options.labelSelector;
    let gone = false;
    this.resetIdleTimer();
    this.abort = this.client.watch(
      this.options.path,
      query,
      (type, raw) => {
        if (run !== this.run) return;
        this.resetIdleTimer();
        if (type === "ERROR") {
          const status = raw as unknown as { code?: number; message?: string };
          if (status.code === 410) gone = true;
          this.options.log.info(
            { informer: this.options.name, code: status.code, message: status.message },
            "watch error event",
          );
          this.abort?.abort();
          return;
        }
        const newRv = raw.metadata?.resourceVersion;
        if (type === "BOOKMARK") {
          if (newRv) this.resourceVersion = newRv;
          return;
        }
        const object = this.transform(raw);
        const key = objectKey(object);
        if (newRv) this.resourceVersion = newRv;
        if (type === "DELETED") {
          const old = this.peek(key);
          this.storeDelete(key);
          this.emit("delete", old ?? object);
          return;
        }
        const old = this.peek(key);
        this.storeSet(key, object);
        if (old) this.emit("update", object, old);
        else this.emit("add", object);
      },
      (error) => {
        if (this.stopped || run !== this.run) return;
        clearTimeout(this.idleTimer);
        if (gone) {
          this.options.log.info(
            { informer: this.options.name },
            "resourceVersion too old (410); relisting",
          );
          void this.listAndWatch(run);
        } else if (error && !(error instanceof Error && error.name === "AbortError")) {
          this.scheduleRestart(run, error);
        } else {
          // Normal end of a stream (server timeout or idle abort): resume where we were.
          this.watch(run);
        }
      },
      this.options.metadataOnly ? METADATA_ACCEPT : undefined,
    );
  }

  private resetIdleTimer(): void {
    clearTimeout(this.idleTimer);
    const idleMs = this.options.idleTimeoutMs ?? 120_000;
    this.idleTimer = setTimeout(() => {
      this.options.log.warn(
        { informer: this.options.name, idleMs },
        "watch silent too long; restarting it",
      );
      this.abort?.abort();
    }, idleMs);
    this.idleTimer.unref();
  }

  private scheduleRestart(run: number, error: unknown): void {
    if (this.stopped || run !== this.run) return;
    this.failures++;
    const min = this.options.minBackoffMs ?? 500;
    const max = this.options.maxBackoffMs ?? 30_000;
    const delay = Math.min(max, min * 2 ** (this.failures - 1)) * (0.8 + Math.random() * 0.4);
    this.options.log.warn(
      { informer: this.options.name, err: String(error), delayMs: Math.round(delay) },
      "list/watch failed; retrying",
    );
    this.retryTimer = setTimeout(() => void this.listAndWatch(run), delay);
  }

  private emit(kind: "add" | "update" | "delete", object: T, old?: T): void {
    for (const handler of this.handlers) {
      try {
        if (kind === "add") handler.onAdd?.(object);
        else if (kind === "update" && old) handler.onUpdate?.(object, old);
        else if (kind === "delete") handler.onDelete?.(object);
      } catch (error) {
        this.options.log.error(
          { informer: this.options.name, err: String(error) },
          "event handler threw",
        );
      }
    }
  }
}

/** Several informers of one resource (one per watched namespace) read as one cache. */
export class InformerGroup<T extends KubeObject> {
  readonly informers: Informer<T>[];

  constructor(informers: Informer<T>[]) {
    this.informers = informers;
  }

  get(key: string): T | undefined {
    for (const informer of this.informers) {
      const object = informer.get(key);
      if (object) return object;
    }
    return undefined;
  }

  byIndex(name: string, value: string): T[] {
    return this.informers.flatMap((informer) => informer.byIndex(name, value));
  }

  list(): T[] {
    return this.informers.flatMap((informer) => informer.list());
  }

  recordWrite(object: T, replacedResourceVersion: string): void {
    const key = objectKey(object);
    this.informers
      .find((informer) => informer.has(key))
      ?.recordWrite(object, replacedResourceVersion);
  }
}
