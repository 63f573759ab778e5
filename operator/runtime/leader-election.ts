// Leader election on a coordination.k8s.io/v1 Lease, after client-go's
// leaderelection: only the holder reconciles; every lease request carries a
// deadline, and a holder that cannot renew within renewDeadline steps down.
// It is also the write fence: writes are allowed only until renewDeadline
// after the start of the last successful renewal, so they stop
// (leaseDuration − renewDeadline) before any standby may take the lease, even
// if this process was frozen, its requests hung or its clock jumped. On
// shutdown the lease is released (holder cleared) so a standby takes over at
// once instead of waiting for expiry.
import type { Logger } from "pino";
import { ApiError, isNotFound, type KubeClient, type WriteFence } from "./kube-client.ts";
import { microTime } from "./time.ts";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  onLeaderChange?: (leader: boolean) => void;
  log: Logger;
}

interface Lease {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** Milliseconds of the monotonic clock; unlike Date.now() it never jumps. */
const monotonic = () => performance.now();

export class LeaderElector implements WriteFence {
  private leading = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  /** Monotonic time until which this replica may act as leader. */
  private validUntil = 0;
  // Expiry is judged by our own clock from when we last saw the record change,
  // never by the renewTime written with another machine's clock.
  private observedRecord = "";
  private observedAt = 0;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  private readonly client: KubeClient;
  private readonly options: LeaderElectionOptions;

  constructor(client: KubeClient, options: LeaderElectionOptions) {
    this.client = client;
    this.options = options;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  writableForMs(): number {
    return this.leading ? this.validUntil - monotonic() : 0;
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.options.namespace}/leases/${this.options.name}`;
  }

  start(): void {
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const attemptStarted = monotonic();
    // A leader's attempt may not outlive its validity; a candidate's is bounded by renewDeadline.
    const deadline = this.leading ? this.validUntil : attemptStarted + this.renewDeadlineMs;
    try {
      const acquired = await this.tryAcquireOrRenew(deadline);
      if (this.stopped) return;
      if (acquired) {
        this.validUntil = attemptStarted + this.renewDeadlineMs;
        if (!this.leading) {
          this.leading = true;
          this.options.log.info(
            { lease: this.options.name, identity: this.options.identity },
            "became leader",
          );
          this.options.onLeaderChange?.(true);
          this.options.onStartedLeading();
        }
      } else if (this.leading) {
        this.stepDown("lease taken by another holder");
      }
    } catch (error) {
      this.options.log.warn({ err: String(error) }, "lease update failed");
    }
    if (this.leading && monotonic() >= this.validUntil)
      this.stepDown("could not renew within renewDeadline");
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.retryPeriodMs);
  }

  private stepDown(why: string): void {
    this.leading = false;
    this.options.log.warn({ why }, "lost leadership");
    this.options.onLeaderChange?.(false);
    this.options.onStoppedLeading();
  }

  private async tryAcquireOrRenew(deadline: number): Promise<boolean> {
    const now = new Date();
    const durationSeconds = Math.round(this.leaseDurationMs / 1000);
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(this.path, { deadline });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await this.client.create(
        `/apis/coordination.k8s.io/v1/namespaces/${this.options.namespace}/leases`,
        {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.options.name, namespace: this.options.namespace },
          spec: {
            holderIdentity: this.options.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        },
        { deadline },
      );
      return true;
    }
    const record = JSON.stringify(lease.spec);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = monotonic();
    }
    const holder = lease.spec.holderIdentity ?? "";
    const heldByOther = holder !== "" && holder !== this.options.identity;
    const expiresAt = this.observedAt + (lease.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && monotonic() < expiresAt) return false;
    const changingHands = holder !== this.options.identity;
    const updated: Lease = {
      ...lease,
      spec: {
        holderIdentity: this.options.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: changingHands ? microTime(now) : lease.spec.acquireTime,
        renewTime: microTime(now),
        leaseTransitions:
          (lease.spec.leaseTransitions ?? 0) + (changingHands && holder !== "" ? 1 : 0),
      },
    };
    try {
      const written = await this.client.update<Lease>(this.path, updated, { deadline });
      this.observedRecord = JSON.stringify(written.spec);
      this.observedAt = monotonic();
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.statusCode === 409) return false;
      throw error;
    }
  }

  /** Stops competing; if leading, clears the holder so a standby can take over immediately. */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    // Only while the lease is still ours for certain: past validUntil a standby may hold it.
    const deadline = this.validUntil;
    this.leading = false; // closes the write fence for everything else first
    this.options.onLeaderChange?.(false);
    try {
      const lease = await this.client.get<Lease>(this.path, { deadline });
      if (lease.spec.holderIdentity !== this.options.identity) return;
      await this.client.update(
        this.path,
        {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: microTime(),
          },
        },
        { deadline },
      );
      this.options.log.info({ lease: this.options.name }, "released leadership");
    } catch (error) {
      this.options.log.warn({ err: String(error) }, "could not release lease");
    }
  }
}
