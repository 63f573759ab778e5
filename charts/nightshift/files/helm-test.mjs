// `helm test`: the operator answers on its metrics Service, and a throwaway
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
  if (process.env.METRICS_URL) {
    await until("the operator's /healthz", async () => (await fetch(`${process.env.METRICS_URL}/healthz`)).ok);
    console.log(`operator answers at ${process.env.METRICS_URL}`);
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
