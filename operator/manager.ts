// Wires the operator together: informers (tasks, their CronJobs, Jobs and
// pods), event → key mapping, the controller, leader election, events, and
// the health/metrics server. The operator never watches Secrets or
// ConfigMaps: a missing reference is learnt from the run pod that needs it.
import type { Server } from "node:http";
import type { Logger } from "pino";
import { Gauge } from "prom-client";
import { API_VERSION, PLURAL } from "../crds/backgroundtask.ts";
import { imageAllowed } from "./backgroundtask/image-policy.ts";
import { MANAGED_SELECTOR, ownerTaskKey, TASK_NAME_ANNOTATION } from "./backgroundtask/labels.ts";
import { CONFIG_ERROR_REASON, missingReferencesOf } from "./backgroundtask/pod-config-errors.ts";
import {
  BackgroundTaskReconciler,
  JOBS_BY_TASK,
  PODS_BY_JOB,
  type ReconcilerDeps,
} from "./backgroundtask/reconciler.ts";
import { RunMetrics } from "./backgroundtask/run-metrics.ts";
import { isGated, StartGate } from "./backgroundtask/start-gate.ts";
import { awaitsStatusWrite } from "./backgroundtask/status.ts";
import type { OperatorConfig } from "./config.ts";
import { Controller } from "./runtime/controller.ts";
import { EventRecorder } from "./runtime/events.ts";
import { startHealthServer } from "./runtime/health.ts";
import { compactingGc, IdleCollector } from "./runtime/idle-collection.ts";
import { Informer, InformerGroup, objectKey } from "./runtime/informer.ts";
import type { KubeClient, KubeObject } from "./runtime/kube-client.ts";
import { LeaderElector } from "./runtime/leader-election.ts";
import { OperatorMetrics } from "./runtime/metrics.ts";
import { OwnEchoes } from "./runtime/own-echoes.ts";

const CONTROLLER_NAME = "backgroundtask";
/** Index of run pods by the reference they report missing: "Secret/namespace/name". */
const PODS_BY_MISSING_REFERENCE = "missingReference";
const TASKS_BY_QUEUE = "queue";

function collectionPath(prefix: string, resource: string, namespace?: string): string {
  return namespace ? `${prefix}/namespaces/${namespace}/${resource}` : `${prefix}/${resource}`;
}

/** Jobs are cached with metadata and status, and of their spec only the deadline (a run's failure reason reads it). */
function slimJob(job: KubeObject): KubeObject {
  const deadline = (job.spec as { activeDeadlineSeconds?: number } | undefined)
    ?.activeDeadlineSeconds;
  return {
    metadata: job.metadata,
    ...(deadline !== undefined ? { spec: { activeDeadlineSeconds: deadline } } : {}),
    status: job.status,
  };
}

/**
 * Pods are cached as just what the operator reads: the runner container's
 * termination, and a CreateContainerConfigError naming a missing reference.
 */
function slimPod(pod: KubeObject): KubeObject {
  const status = pod.status as
    | {
        phase?: string;
        containerStatuses?: Array<{
          name: string;
          state?: { terminated?: unknown; waiting?: { reason?: string; message?: string } };
        }>;
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
        state: c.state?.terminated
          ? { terminated: c.state.terminated }
          : c.state?.waiting?.reason === CONFIG_ERROR_REASON
            ? { waiting: c.state.waiting }
            : {},
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
  private readonly leaseClient: KubeClient;
  private readonly log: Logger;
  private leading = false;
  private idleCollector?: IdleCollector;

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
          compact: true,
          keepUnpacked: awaitsStatusWrite,
          log: informerLog,
        }),
      );
      this.cronJobs.push(
        new Informer(client, {
          name: `cronjobs/${where}`,
          path: collectionPath("/apis/batch/v1", "cronjobs", ns),
          labelSelector: MANAGED_SELECTOR,
          compact: true,
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
      informer.addIndex(PODS_BY_MISSING_REFERENCE, (pod) =>
        missingReferencesOf(pod).map(
          (ref) => `${ref.split("/")[0]}/${pod.metadata.namespace}/${ref.split("/")[1]}`,
        ),
      );
    }
    const events = new EventRecorder(
      client,
      "nightshift.dev/operator",
      config.identity,
      log.child({ component: "events" }),
    );
    const appliedCronJobs = new OwnEchoes();
    const reconciler = new BackgroundTaskReconciler({
      client,
      appliedCronJobs,
      tasks: new InformerGroup(this.tasks),
      cronJobs: new InformerGroup(this.cronJobs),
      jobs: new InformerGroup(this.jobs),
      pods: new InformerGroup(this.pods),
      references: {
        // Missing only while a run pod of this namespace waits on it; once the
        // object exists the kubelet starts the container and the error clears.
        exists: (kind, namespace, name) =>
          !this.pods.some(
            (informer) =>
              informer.byIndex(PODS_BY_MISSING_REFERENCE, `${kind}/${namespace}/${name}`).length >
              0,
          ),
        imageAllowed: (image) =>
          imageAllowed(image, config.runnerImage, config.allowedImagePrefixes),
      },
      events,
      settings: config,
      log: log.child({ controller: CONTROLLER_NAME }),
      trackReferences: (taskKey, namespace, references) =>
        this.trackReferences(taskKey, namespace, references),
      runMetrics: new RunMetrics(this.metrics.registry),
      deferral: config.queueSaturation > 0 ? this.deferral(config) : undefined,
    });
    this.controller = new Controller(
      CONTROLLER_NAME,
      reconciler.reconcile,
      config.workers,
      log.child({ controller: CONTROLLER_NAME }),
      this.metrics,
    );
    this.metrics.watchClient(client);
    // Like controller-runtime: error and result counters exist at 0 from the start, so rate() has data.
    this.metrics.reconcileErrors.inc({ controller: CONTROLLER_NAME }, 0);
    for (const result of ["success", "error", "requeue_after"])
      this.metrics.reconcileTotal.inc({ controller: CONTROLLER_NAME, result }, 0);
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
    for (const informer of this.cronJobs) {
      const news = (cronJob: KubeObject) =>
        !appliedCronJobs.isEcho(objectKey(cronJob), cronJob.metadata.resourceVersion);
      informer.addHandlers({
        onAdd: (o) => news(o) && enqueue(ownerTaskKey(o)),
        onUpdate: (o) => news(o) && enqueue(ownerTaskKey(o)),
        onDelete: (o) => enqueue(ownerTaskKey(o)),
      });
    }
    for (const informer of this.jobs) {
      informer.addHandlers({
        onAdd: (o) => enqueue(ownerTaskKey(o)),
        onUpdate: (o) => enqueue(ownerTaskKey(o)),
        onDelete: (o) => enqueue(ownerTaskKey(o)),
      });
    }
    // A run pod starting or stopping to report a missing reference: its own task
    // and every task reading the same reference are validated again.
    const requeueConfigErrors = (pod: KubeObject, old?: KubeObject) => {
      const now = missingReferencesOf(pod);
      const before = old ? missingReferencesOf(old) : [];
      if (now.join() === before.join()) return;
      const taskName = pod.metadata.annotations?.[TASK_NAME_ANNOTATION];
      if (taskName) enqueue(`${pod.metadata.namespace}/${taskName}`);
      for (const ref of new Set([...now, ...before])) {
        const [kind, name] = ref.split("/");
        for (const key of this.referencedBy.get(`${kind}/${pod.metadata.namespace}/${name}`) ?? [])
          enqueue(key);
      }
    };
    for (const informer of this.pods) {
      informer.addHandlers({
        onAdd: (pod) => requeueConfigErrors(pod),
        onUpdate: (pod, old) => requeueConfigErrors(pod, old),
        onDelete: (pod) => requeueConfigErrors(pod, undefined),
      });
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
      // Writes only while the lease is surely ours (see leader-election.ts).
      client.writeFence = this.elector;
    }
    this.leaseClient = leaseClient;
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
    return [...this.localQueues, ...this.pods, ...this.cronJobs, ...this.jobs, ...this.tasks];
  }

  async start(): Promise<void> {
    this.server = await startHealthServer(this.config.metricsAddress, this.metrics.registry, {
      healthy: () => true,
      // Credentials the apiserver keeps rejecting make the replica unready, where kubectl shows it.
      ready: () =>
        this.allInformers.every((i) => i.hasSynced) &&
        !this.client.credentialsRejected &&
        !this.leaseClient.credentialsRejected,
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
      for (const key of informer.keys()) this.controller.enqueue(key);
    const gc = compactingGc();
    if (gc) {
      const collector = new IdleCollector(() => this.controller.idle, gc);
      this.idleCollector = collector;
      this.controller.onReconciled = () => collector.reconciled();
      collector.started();
    } else this.log.warn("no gc() available: memory is returned only by V8's own collections");
    this.controller.start();
    this.startGate?.start();
  }

  /**
   * Graceful stop: hand out no more keys, give reconciles in flight up to
   * graceMs, release the lease (which also closes the write fence), stop watches.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.startGate?.stop();
    this.idleCollector?.stop();
    this.log.info(
      {
        queued: this.controller.queue.length,
        reconciled: this.controller.reconciled,
      },
      "stopping: no more keys; finishing reconciles in flight",
    );
    const abandoned = await this.controller.stop(graceMs);
    if (abandoned) this.log.warn({ abandoned, graceMs }, "reconciles still running after grace");
    await this.elector?.release();
    for (const informer of this.allInformers) informer.stop();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    this.client.close();
    this.leaseClient.close();
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
