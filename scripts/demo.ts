// `make demo`: a local control plane, the CRD, the operator, and the task
// catalogue from examples/, shown with `kubectl get bgt` as the tasks become
// Ready and their runs come in. Ctrl-C stops everything cleanly.
// DEMO_EXIT_WHEN_READY=1 ends the demo once every task is Ready (for scripts).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ControlPlane } from "../test/controlplane/controlplane.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const say = (line: string) => console.log(`\x1b[1m[demo]\x1b[0m ${line}`);

const controlPlane = new ControlPlane({ log: (line) => say(`control plane: ${line}`) });
let operator: ReturnType<typeof spawn> | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say("stopping operator and control plane");
    if (operator && operator.exitCode === null) {
      const exited = new Promise((resolve) => operator?.once("exit", resolve));
      operator.kill("SIGTERM");
      await exited;
    }
    await controlPlane.stop();
    say("stopped");
  }
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

try {
  await controlPlane.start();
  say(`control plane ready; KUBECONFIG=${controlPlane.kubeconfigPath}`);
  controlPlane.kubectl([
    "apply",
    "--server-side",
    "-f",
    `${root}crds/nightshift.dev_backgroundtasks.yaml`,
  ]);
  controlPlane.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/backgroundtasks.nightshift.dev",
  ]);
  say(
    "CRD installed; starting the operator (logs in the operator's JSON lines below are filtered to warnings)",
  );
  operator = spawn(
    "setpriv",
    [
      "--pdeathsig",
      "KILL",
      "--",
      process.execPath,
      `${root}operator/main.ts`,
      "--leader-elect=false",
      "--metrics-address=127.0.0.1:0",
      "--log-level=warn",
    ],
    {
      env: { ...process.env, KUBECONFIG: controlPlane.kubeconfigPath },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  operator.once("exit", (code) => {
    if (!stopping) {
      say(`operator exited with ${code}`);
      void stop(1);
    }
  });
  controlPlane.kubectl(["apply", "-f", `${root}examples/catalogue/`]);
  say("applied examples/catalogue (namespace nightshift-demo)");
  let allReady = false;
  for (;;) {
    const table = controlPlane.kubectl(["get", "bgt", "-n", "nightshift-demo"]);
    console.log(
      `\n$ kubectl get bgt -n nightshift-demo   (${new Date().toISOString().slice(11, 19)})\n${table}`,
    );
    const statuses = controlPlane
      .kubectl([
        "get",
        "bgt",
        "-n",
        "nightshift-demo",
        "-o",
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
      ])
      .trim()
      .split("\n");
    if (!allReady && statuses.length > 0 && statuses.every((s) => s === "True")) {
      allReady = true;
      say(
        "every task is Ready. Runs of reminders-dispatch (every minute) will show up in its status; Ctrl-C to stop.",
      );
      if (process.env.DEMO_EXIT_WHEN_READY === "1") await stop(0);
    }
    await new Promise((resolve) => setTimeout(resolve, allReady ? 20_000 : 2_000));
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  await stop(1);
}
