// Wires the operator together: informers (tasks, their CronJobs and Jobs,
// metadata of Secrets and ConfigMaps), event → key mapping, the controller,
// leader election, events, and the health/metrics server.
import type { Server } from "node:http";
import type { Logger } from "pino";
import { Gauge } from "prom-client";
import { API_VERSION, PLURAL } from "../crds/backgroundtask.ts";
import { MANAGED_SELECTOR, ownerTaskKey } from "./backgroundtask/labels.ts";
import {
  BackgroundTaskReconciler,
  JOBS_BY_TASK,
  PODS_BY_JOB,
  type ReconcilerDeps,
} from "./backgroundtask/reconciler.ts";
import { isGated, StartGate } from "./backgroundtask/start-gate.ts";
import type { OperatorConfig } from "./config.ts";
import { Controller } from "./runtime/controller.ts";
import { EventRecorder } from "./runtime/events.ts";
import { startHealthServer } from "./runtime/health.ts";
import { Informer, InformerGroup, objectKey } from "./runtime/informer.ts";
import type { KubeClient, KubeObject } from "./runtime/kube-client.ts";
import { LeaderElector } from "./runtime/leader-election.ts";
import { OperatorMetrics } from "./runtime/metrics.ts";

const CONTROLLER_NAME = "backgroundtask";
const TASKS_BY_QUEUE = "queue";

function collectionPath(prefix: string, resource: string, namespace?: string): string {
  return namespace ? `${prefix}/namespaces/${namespace}/${resource}` : `${prefix}/${resource}`;
}

/** Jobs are cached without their spec: the controller reads only metadata and status. */
function slimJob(job: KubeObject): KubeObject {
  return { metadata: job.metadata, status: job.status };
}

/** Pods are cached as just what run accounting reads: the runner container's termination. */
function slimPod(pod: KubeObject): KubeObject {
  const status = pod.status as
    | {
        phase?: string;
        containerStatuses?: Array<{ name: string; state?: { terminated?: unknown } }>;
      }
    | undefined;
  const { name, namespace, uid, resourceVersion, labels, annotations, creationTimestamp } =
    pod.metadata;
  // Only pods held by the start rate keep (just) their gates and priority, for the start gate.
  const spec = pod.spec as { schedulingGates?: unknown[]; priority?: number } | undefined;
  return {
    metadata: { name, namespace, uid, resourceVersion, labels, annotations, creationTimestamp },
    ...(spec?.schedulingGates?.length
      ? { spec: { schedulingGates: spec.schedulingGates, priority: spec.priority } }
      : {}),
    status: {
      phase: status?.phase,
      containerStatuses: status?.containerStatuses?.map((c) => ({
        name: c.name,
        state: c.state?.terminated ? { terminated: c.state.terminated } : {},
      })),
    },
  };
}

/** LocalQueues are cached as their pending count only. */
function slimLocalQueue(queue: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion } = queue.metadata;
  const status = queue.status as { pendingWorkloads?: number } | undefined;
  return {
    metadata: { name, namespace, uid, resourceVersion },
    status: { pendingWorkloads: status?.pendingWorkloads ?? 0 },
  };
}

export class Manager {
  readonly metrics = new OperatorMetrics();
  readonly tasks: Informer<KubeObject>[] = [];
  readonly cronJobs: Informer<KubeObject>[] = [];
  readonly jobs: Informer<KubeObject>[] = [];
  readonly pods: Informer<KubeObject>[] = [];
  readonly secrets: Informer<KubeObject>[] = [];
  readonly configMaps: Informer<KubeObject>[] = [];
  /** Kueue LocalQueues (just their pending count), only with --queue-saturation. */
  readonly localQueues: Informer<KubeObject>[] = [];
  readonly controller: Controller;
  private readonly startGate?: StartGate;
  private readonly elector?: LeaderElector;
  private server?: Server;
  private readonly referencedBy = new Map<string, Set<string>>();
  private readonly referencesOf = new Map<string, string[]>();
  private readonly config: OperatorConfig;
  private readonly client: KubeClient;
  private readonly log: Logger;
  private leading = false;

  constructor(config: OperatorConfig, client: KubeClient, leaseClient: KubeClient, log: Logger) {
    this.config = config;
    this.client = client;
    this.log = log;
    const scopes = config.namespaces.length ? config.namespaces : [undefined];
    for (const ns of scopes) {
      const where = ns ?? "all";
      const informerLog = log.child({ component: "informer" });
      this.tasks.push(
        new Informer(client, {
          name: `backgroundtasks/${where}`,
          path: collectionPath(`/apis/${API_VERSION}`, PLURAL, ns),
          log: informerLog,
        }),
      );
      this.cronJobs.push(
        new Informer(client, {
          name: `cronjobs/${where}`,
          path: collectionPath("/apis/batch/v1", "cronjobs", ns),
          labelSelector: MANAGED_SELECTOR,
          log: informerLog,
        }),
      );
      this.jobs.push(
        new Informer(client, {
          name: `jobs/${where}`,
          path: collectionPath("/apis/batch/v1", "jobs", ns),
          labelSelector: MANAGED_SELECTOR,
          transform: slimJob,
          log: informerLog,
        }),
      );
      this.pods.push(
        new Informer(client, {
          name: `pods/${where}`,
          path: collectionPath("/api/v1", "pods", ns),
          labelSelector: MANAGED_SELECTOR,
          transform: slimPod,
          log: informerLog,
        }),
      );
      this.secrets.push(
        new Informer(client, {
          name: `secrets/${where}`,
          path: collectionPath("/api/v1", "secrets", ns),
          metadataOnly: true,
          log: informerLog,
        }),
      );
      this.configMaps.push(
        new Informer(client, {
          name: `configmaps/${where}`,
          path: collectionPath("/api/v1", "configmaps", ns),
          metadataOnly: true,
          log: informerLog,
        }),
      );
      if (config.queueSaturation > 0)
        this.localQueues.push(
          new Informer(client, {
            name: `localqueues/${where}`,
            path: collectionPath("/apis/kueue.x-k8s.io/v1beta2", "localqueues", ns),
            transform: slimLocalQueue,
            log: informerLog,
          }),
        );
    }
    for (const informer of this.jobs)
      informer.addIndex(JOBS_BY_TASK, (job) => [ownerTaskKey(job) ?? ""].filter(Boolean));
    for (const informer of this.pods) {
      informer.addIndex(PODS_BY_JOB, (pod) => {
        const job =
          pod.metadata.labels?.["batch.kubernetes.io/job-name"] ??
          pod.metadata.labels?.["job-name"];
        return job ? [`${pod.metadata.namespace}/${job}`] : [];
      });
    }
    const events = new EventRecorder(
      client,
      "nightshift.dev/operator",
      config.identity,
      log.child({ component: "events" }),
    );
    const reconciler = new BackgroundTaskReconciler({
      client,
      tasks: new InformerGroup(this.tasks),
      cronJobs: new InformerGroup(this.cronJobs),
      jobs: new InformerGroup(this.jobs),
      pods: new InformerGroup(this.pods),
      references: {
        exists: (kind, namespace, name) =>
          (kind === "Secret" ? this.secrets : this.configMaps).some(
            (informer) => informer.get(`${namespace}/${name}`) !== undefined,
          ),
      },
      events,
      settings: config,
      log: log.child({ controller: CONTROLLER_NAME }),
      trackReferences: (taskKey, namespace, references) =>
        this.trackReferences(taskKey, namespace, references),
      deferral: config.queueSaturation > 0 ? this.deferral(config) : undefined,
    });
    this.controller = new Controller(
      CONTROLLER_NAME,
      reconciler.reconcile,
      config.workers,
      log.child({ controller: CONTROLLER_NAME }),
      this.metrics,
    );
    this.metrics.watchRequests(client.requestCounts);
    if (config.startRate > 0) {
      const gate = new StartGate(
        client,
        new InformerGroup(this.pods),
        {
          rate: config.startRate,
          burst: config.startBurst ?? Math.max(1, Math.ceil(config.startRate)),
        },
        this.metrics.registry,
        log.child({ component: "start-gate" }),
      );
      this.startGate = gate;
      const notify = (pod: KubeObject) => isGated(pod as never) && gate.notify();
      for (const informer of this.pods) informer.addHandlers({ onAdd: notify, onUpdate: notify });
    }

    const enqueue = (key: string | undefined) => key && this.controller.enqueue(key);
    for (const informer of this.tasks) {
      informer.addHandlers({
        onAdd: (task) => enqueue(objectKey(task)),
        // Status-only updates (our own writes) carry no new generation, labels or annotations: skip them.
        onUpdate: (task, old) => {
          if (
            task.metadata.generation !== old.metadata.generation ||
            JSON.stringify(task.metadata.annotations) !==
              JSON.stringify(old.metadata.annotations) ||
            task.metadata.deletionTimestamp !== old.metadata.deletionTimestamp
          ) {
            enqueue(objectKey(task));
          }
        },
        onDelete: (task) => this.forgetReferences(objectKey(task)),
      });
    }
    for (const informer of [...this.cronJobs, ...this.jobs]) {
      informer.addHandlers({
        onAdd: (o) => enqueue(ownerTaskKey(o)),
        onUpdate: (o) => enqueue(ownerTaskKey(o)),
        onDelete: (o) => enqueue(ownerTaskKey(o)),
      });
    }
    for (const [kind, informers] of [
      ["Secret", this.secrets],
      ["ConfigMap", this.configMaps],
    ] as const) {
      for (const informer of informers) {
        const requeueDependents = (o: KubeObject) => {
          for (const key of this.referencedBy.get(`${kind}/${objectKey(o)}`) ?? []) enqueue(key);
        };
        informer.addHandlers({ onAdd: requeueDependents, onDelete: requeueDependents });
      }
    }

    if (config.leaderElect) {
      this.metrics.leaderStatus.set({ name: config.leaderElectionId }, 0);
      this.elector = new LeaderElector(leaseClient, {
        namespace: config.leaderElectionNamespace,
        name: config.leaderElectionId,
        identity: config.identity,
        log: log.child({ component: "leader-election" }),
        onLeaderChange: (leader) =>
          this.metrics.leaderStatus.set({ name: config.leaderElectionId }, leader ? 1 : 0),
        onStartedLeading: () => void this.startLeading(),
        onStoppedLeading: () => {
          // Like controller-runtime: a replica that lost its lease exits and is restarted clean.
          this.log.error("leadership lost; exiting");
          process.exit(1);
        },
      });
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Deferral wiring: LocalQueue load from the cache, queue changes re-queue their tasks, a gauge of deferred tasks. */
  private deferral(config: OperatorConfig): NonNullable<ReconcilerDeps["deferral"]> {
    for (const informer of this.tasks)
      informer.addIndex(TASKS_BY_QUEUE, (task) => {
        const queue = (task.spec as { queueName?: string } | undefined)?.queueName;
        return queue ? [`${task.metadata.namespace}/${queue}`] : [];
      });
    const tasks = new InformerGroup(this.tasks);
    for (const informer of this.localQueues) {
      const requeue = (queue: KubeObject) => {
        for (const task of tasks.byIndex(TASKS_BY_QUEUE, objectKey(queue)))
          this.controller.enqueue(objectKey(task));
      };
      informer.addHandlers({ onAdd: requeue, onUpdate: requeue, onDelete: requeue });
    }
    const deferred = new Set<string>();
    const gauge = new Gauge({
      name: "nightshift_tasks_deferred",
      help: "Tasks whose runs are held back because their Kueue queue is saturated",
      registers: [this.metrics.registry],
    });
    const queues = new InformerGroup(this.localQueues);
    return {
      policy: {
        saturatedAt: config.queueSaturation,
        levels: config.deferredPriorities,
        maxDeferralMs: config.maxDeferral,
      },
      load: (namespace, queueName) => {
        const queue = queues.get(`${namespace}/${queueName}`);
        const pending = (queue?.status as { pendingWorkloads?: number } | undefined)
          ?.pendingWorkloads;
        return queue ? { pending: pending ?? 0 } : undefined;
      },
      onDecision: (taskKey, isDeferred) => {
        if (isDeferred) deferred.add(taskKey);
        else deferred.delete(taskKey);
        gauge.set(deferred.size);
      },
    };
  }

  private get allInformers(): Informer<KubeObject>[] {
    return [
      ...this.localQueues,
      ...this.secrets,
      ...this.configMaps,
      ...this.pods,
      ...this.cronJobs,
      ...this.jobs,
      ...this.tasks,
    ];
  }

  async start(): Promise<void> {
    this.server = await startHealthServer(this.config.metricsAddress, this.metrics.registry, {
      healthy: () => true,
      ready: () => this.allInformers.every((i) => i.hasSynced),
    });
    // Caches start on every replica so a standby takes over with a warm cache.
    for (const informer of this.allInformers) informer.start();
    if (this.elector) this.elector.start();
    else await this.startLeading();
  }

  private async startLeading(): Promise<void> {
    await Promise.all(this.allInformers.map((i) => i.waitForSync()));
    this.leading = true;
    this.log.info(
      { tasks: this.tasks.reduce((n, i) => n + i.size, 0) },
      "caches synced; reconciling",
    );
    for (const informer of this.tasks)
      for (const task of informer.list()) this.controller.enqueue(objectKey(task));
    this.controller.start();
    this.startGate?.start();
  }

  /** Graceful stop: finish reconciles in flight, release the lease, stop watches. */
  async stop(): Promise<void> {
    this.startGate?.stop();
    await this.controller.stop();
    await this.elector?.release();
    for (const informer of this.allInformers) informer.stop();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    this.client.close();
  }

  private trackReferences(taskKey: string, namespace: string, references: string[]): void {
    this.forgetReferences(taskKey);
    const keys = references.map((ref) => {
      const [kind, name] = ref.split("/");
      return `${kind}/${namespace}/${name}`;
    });
    this.referencesOf.set(taskKey, keys);
    for (const key of keys) {
      const set = this.referencedBy.get(key) ?? new Set<string>();
      this.referencedBy.set(key, set);
      set.add(taskKey);
    }
  }

  private forgetReferences(taskKey: string): void {
    for (const key of this.referencesOf.get(taskKey) ?? [])
      this.referencedBy.get(key)?.delete(taskKey);
    this.referencesOf.delete(taskKey);
  }
}
