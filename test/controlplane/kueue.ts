// Kueue's controller manager against the local control plane, for the suites
// that exercise queueing: its CRDs, its webhooks served on 127.0.0.1 with a
// certificate from the control plane's CA, configured for batch/v1 Jobs only.
// Other suites never pay for it: a suite starts it, and stopping it removes
// the webhook configurations first so no Job creation elsewhere can fail.
// One Kueue per control plane at a time (it runs without leader election).
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { signedCert } from "./pki.ts";
import { freePorts, type ManagedProcess, startProcess, stopProcess } from "./processes.ts";

/** Namespaces carrying this label are the only ones whose Jobs Kueue manages. */
export const KUEUE_NAMESPACE_LABEL = { key: "nightshift.dev/kueue", value: "enabled" };
const WEBHOOK_NAME = "nightshift-test-kueue";

export interface KueueOptions {
  kubeconfigPath: string;
  /** The folder build-binaries.sh printed: kueue, kubectl and kueue-manifests/. */
  binDir: string;
  log?: (line: string) => void;
}

export interface KueueController {
  logFile: string;
  stop(): Promise<void>;
}

export async function startKueue(options: KueueOptions): Promise<KueueController> {
  const log = options.log ?? (() => {});
  const workDir = mkdtempSync(join(tmpdir(), "nightshift-kueue-"));
  const kubectl = (args: string[], input?: string) =>
    execFileSync(
      join(options.binDir, "kubectl"),
      [`--kubeconfig=${options.kubeconfigPath}`, ...args],
      {
        encoding: "utf8",
        input,
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
  const manifests = join(options.binDir, "kueue-manifests");

  // Serving certificate for 127.0.0.1, signed by the CA the kube-apiserver trusts.
  const caCert = certificateAuthorityOf(options.kubeconfigPath);
  const caDir = dirname(caCert);
  signedCert(
    caDir,
    "kueue-webhook",
    "/CN=kueue-webhook",
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
      "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost",
  );
  const certDir = join(workDir, "certs");
  mkdirSync(certDir);
  copyFileSync(join(caDir, "kueue-webhook.crt"), join(certDir, "tls.crt"));
  copyFileSync(join(caDir, "kueue-webhook.key"), join(certDir, "tls.key"));

  const crds = readdirSync(manifests).filter((f) => f.startsWith("kueue.x-k8s.io_"));
  for (const file of crds)
    kubectl(["apply", "--server-side", "--force-conflicts", "-f", join(manifests, file)]);
  // kueue.x-k8s.io_workloads.yaml holds crd/workloads.kueue.x-k8s.io.
  const crdNames = crds.map(
    (f) => `crd/${f.replace(/^kueue\.x-k8s\.io_(.*)\.yaml$/, "$1")}.kueue.x-k8s.io`,
  );
  kubectl(["wait", "--for=condition=Established", ...crdNames, "--timeout=60s"]);
  if (!kubectl(["get", "namespace", "kueue-system", "--ignore-not-found", "-o", "name"]).trim())
    kubectl(["create", "namespace", "kueue-system"]);

  const [webhookPort, probePort] = await freePorts(2);
  const configFile = join(workDir, "config.yaml");
  writeFileSync(
    configFile,
    JSON.stringify({
      apiVersion: "config.kueue.x-k8s.io/v1beta2",
      kind: "Configuration",
      namespace: "kueue-system",
      health: { healthProbeBindAddress: `127.0.0.1:${probePort}` },
      metrics: { bindAddress: "0" },
      webhook: { port: webhookPort, host: "127.0.0.1", certDir },
      leaderElection: { leaderElect: false },
      internalCertManagement: { enable: false },
      manageJobsWithoutQueueName: false,
      managedJobsNamespaceSelector: {
        matchLabels: { [KUEUE_NAMESPACE_LABEL.key]: KUEUE_NAMESPACE_LABEL.value },
      },
      integrations: { frameworks: ["batch/job"] },
      clientConnection: { qps: 100, burst: 200 },
    }),
  );
  const logFile = join(workDir, "kueue.log");
  log("starting kueue");
  // `env`: Kueue reads its kubeconfig and (with the build overlay) metrics certificate folder from there.
  const proc: ManagedProcess = startProcess(
    "kueue",
    "env",
    [
      `KUBECONFIG=${options.kubeconfigPath}`,
      `KUEUE_METRICS_CERT_DIR=${certDir}`,
      join(options.binDir, "kueue"),
      `--config=${configFile}`,
      `--kubeconfig=${options.kubeconfigPath}`,
      // The on-demand visibility API is an aggregated API server: not needed here.
      "--feature-gates=VisibilityOnDemand=false",
      "--zap-log-level=info",
    ],
    logFile,
  );
  const stop = async () => {
    kubectl([
      "delete",
      "mutatingwebhookconfiguration,validatingwebhookconfiguration",
      "-l",
      `app=${WEBHOOK_NAME}`,
      "--ignore-not-found",
      "--wait=false",
    ]);
    await stopProcess(proc);
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 180_000;
    for (;;) {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new Error(`kueue exited (${proc.child.exitCode}):\n${tail(logFile)}`);
      const ready = await fetch(`http://127.0.0.1:${probePort}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`kueue not ready after 180 s:\n${tail(logFile)}`);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const caBundle = Buffer.from(readFileSync(caCert)).toString("base64");
    kubectl(
      ["apply", "--server-side", "--force-conflicts", "-f", "-"],
      webhookConfigurations(
        readFileSync(join(manifests, "manifests.yaml"), "utf8"),
        webhookPort ?? 0,
        caBundle,
      ),
    );
    log("kueue ready");
  } catch (error) {
    await stop();
    throw error;
  }
  return { logFile, stop };
}

/**
 * Kueue's webhook configurations for its own kinds and batch/v1 Jobs, pointed
 * at 127.0.0.1 instead of an in-cluster Service; Job webhooks only in
 * namespaces labelled for Kueue.
 */
export function webhookConfigurations(
  manifestYaml: string,
  port: number,
  caBundle: string,
): string {
  const items = [];
  for (const doc of parseAllDocuments(manifestYaml)) {
    const config = doc.toJS() as {
      kind: string;
      webhooks: Array<{
        clientConfig: { service?: { path?: string } };
        rules: Array<{ apiGroups: string[] }>;
        namespaceSelector?: unknown;
      }>;
    } | null;
    if (!config) continue;
    const webhooks = config.webhooks
      .filter((w) =>
        w.rules.some((r) => r.apiGroups.some((g) => g === "kueue.x-k8s.io" || g === "batch")),
      )
      .map((w) => {
        const isJob = w.rules.some((r) => r.apiGroups.includes("batch"));
        return {
          ...w,
          clientConfig: {
            url: `https://127.0.0.1:${port}${w.clientConfig.service?.path ?? "/"}`,
            caBundle,
          },
          ...(isJob
            ? {
                namespaceSelector: {
                  matchLabels: { [KUEUE_NAMESPACE_LABEL.key]: KUEUE_NAMESPACE_LABEL.value },
                },
              }
            : {}),
        };
      });
    const suffix = config.kind === "MutatingWebhookConfiguration" ? "mutating" : "validating";
    items.push({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: config.kind,
      metadata: { name: `${WEBHOOK_NAME}-${suffix}`, labels: { app: WEBHOOK_NAME } },
      webhooks,
    });
  }
  return JSON.stringify({ apiVersion: "v1", kind: "List", items });
}

function certificateAuthorityOf(kubeconfigPath: string): string {
  const kubeconfig = parse(readFileSync(kubeconfigPath, "utf8")) as {
    clusters: Array<{ cluster: { "certificate-authority"?: string } }>;
  };
  const ca = kubeconfig.clusters[0]?.cluster["certificate-authority"];
  if (!ca) throw new Error(`${kubeconfigPath} names no certificate-authority file`);
  return ca;
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "";
  }
}
