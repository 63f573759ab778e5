// `helm uninstall` post-delete hook. Run Jobs carry the finalizer
// nightshift.dev/run-accounting until the operator has counted them; with the
// operator uninstalled nobody will, and a Job deleted later (its task or
// CronJob removed) would hang in Terminating for good. So: wait until the
// operator's pods are gone (a running one would add the finalizer back), then
// release every run Job. Runs finishing from now on are not counted; the Jobs
// themselves, and their pods and logs, stay until something deletes them.
import { readFileSync } from "node:fs";

const FINALIZER = "nightshift.dev/run-accounting";
const SA = "/var/run/secrets/kubernetes.io/serviceaccount";
const api = `https://${process.env.KUBERNETES_SERVICE_HOST}:${process.env.KUBERNETES_SERVICE_PORT}`;
const token = readFileSync(process.env.TOKEN_FILE ?? `${SA}/token`, "utf8").trim();
const namespaces = (process.env.WATCH_NAMESPACES ?? "").split(",").filter(Boolean);
const deadline = Date.now() + Number(process.env.TIMEOUT_SECONDS ?? "120") * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function kube(method, path, body, contentType = "application/json") {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": contentType },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw Object.assign(new Error(`${method} ${path}: ${res.status} ${text}`), { status: res.status });
  return JSON.parse(text);
}

const operatorPods = `/api/v1/namespaces/${process.env.RELEASE_NAMESPACE}/pods?labelSelector=${encodeURIComponent(process.env.OPERATOR_SELECTOR)}`;
for (;;) {
  const pods = (await kube("GET", operatorPods)).items;
  if (pods.length === 0) break;
  if (Date.now() > deadline) throw new Error(`operator pods still present: ${pods.map((p) => p.metadata.name).join(", ")}`);
  console.log(`waiting for ${pods.length} operator pod(s) to stop`);
  await sleep(1000);
}

const selector = encodeURIComponent("app.kubernetes.io/managed-by=nightshift-operator");
const collections = namespaces.length
  ? namespaces.map((ns) => `/apis/batch/v1/namespaces/${ns}/jobs`)
  : ["/apis/batch/v1/jobs"];
let released = 0;
for (const collection of collections) {
  for (const job of (await kube("GET", `${collection}?labelSelector=${selector}`)).items) {
    const index = (job.metadata.finalizers ?? []).indexOf(FINALIZER);
    if (index < 0) continue;
    const path = `/apis/batch/v1/namespaces/${job.metadata.namespace}/jobs/${job.metadata.name}`;
    // test-then-remove: never drop someone else's finalizer if the list changed meanwhile.
    const patch = [
      { op: "test", path: `/metadata/finalizers/${index}`, value: FINALIZER },
      { op: "remove", path: `/metadata/finalizers/${index}` },
    ];
    await kube("PATCH", path, patch, "application/json-patch+json").catch((error) => {
      if (error.status !== 404 && error.status !== 422) throw error;
    });
    released++;
  }
}
console.log(`released ${released} run Job(s) from ${FINALIZER}`);
