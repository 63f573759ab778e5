// `helm test`: every operator pod answers on its metrics port, and a throwaway
// BackgroundTask becomes Ready (its CronJob exists). Plain Node, no packages:
// it runs in the operator image with the test ServiceAccount's token.
import { readFileSync } from "node:fs";

const SA = "/var/run/secrets/kubernetes.io/serviceaccount";
const api = `https://${process.env.KUBERNETES_SERVICE_HOST}:${process.env.KUBERNETES_SERVICE_PORT}`;
const token = readFileSync(process.env.TOKEN_FILE ?? `${SA}/token`, "utf8").trim();
const namespace = process.env.TASK_NAMESPACE;
const name = `helm-test-${Date.now().toString(36)}`;
const taskPath = `/apis/nightshift.dev/v1alpha1/namespaces/${namespace}/backgroundtasks`;
const deadline = Date.now() + Number(process.env.TIMEOUT_SECONDS ?? "120") * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function kube(method, path, body) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

async function until(what, check) {
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await sleep(1000);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

try {
  // Every operator pod answers /healthz; METRICS_URL (when set) replaces the pod lookup.
  const urls = process.env.METRICS_URL
    ? [process.env.METRICS_URL]
    : await until("running operator pods", async () => {
        const selector = encodeURIComponent(process.env.OPERATOR_SELECTOR);
        const pods = (await kube("GET", `/api/v1/namespaces/${process.env.RELEASE_NAMESPACE}/pods?labelSelector=${selector}`)).items;
        const ips = pods.filter((p) => p.status?.podIP && !p.metadata.deletionTimestamp).map((p) => p.status.podIP);
        return ips.length ? ips.map((ip) => `http://${ip}:${process.env.METRICS_PORT}`) : undefined;
      });
  for (const url of urls) {
    await until(`${url}/healthz`, async () => (await fetch(`${url}/healthz`)).ok);
    console.log(`operator answers at ${url}`);
  }
  await kube("POST", taskPath, {
    apiVersion: "nightshift.dev/v1alpha1",
    kind: "BackgroundTask",
    metadata: { name, labels: { "app.kubernetes.io/created-by": "helm-test" } },
    spec: {
      task: "http.request",
      params: { url: "http://example.invalid/" },
      schedule: "0 0 1 1 *",
      suspend: true,
    },
  });
  console.log(`created BackgroundTask ${namespace}/${name}`);
  const ready = await until("the task to become Ready", async () => {
    const task = await kube("GET", `${taskPath}/${name}`);
    return task.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
  });
  console.log(`BackgroundTask ${name} is Ready: ${ready.message}`);
} finally {
  await kube("DELETE", `${taskPath}/${name}`).catch(() => {});
}
