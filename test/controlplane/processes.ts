// Child processes that cannot outlive their parent: each is started under
// `setpriv --pdeathsig KILL`, so the kernel kills it when the process that
// spawned it dies, even by SIGKILL or a crash that skips every handler.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { type AddressInfo, createServer, type Server } from "node:net";

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  logFile: string,
  /** Extra setpriv options, e.g. to drop to another user. */
  setprivArgs: string[] = [],
): ManagedProcess {
  const log = openSync(logFile, "a");
  const child = spawn("setpriv", ["--pdeathsig", "KILL", ...setprivArgs, "--", command, ...args], {
    stdio: ["ignore", log, log],
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null)));
    child.once("error", () => resolve(-1));
  });
  return { name, child, logFile, exited };
}

/** Asks a process to stop, and kills it if it has not within the grace period. */
export async function stopProcess(proc: ManagedProcess, graceMs = 5000): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill("SIGTERM");
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

/** Distinct TCP ports on 127.0.0.1 that nothing listens on right now. */
export async function freePorts(count: number): Promise<number[]> {
  // Hold every listener until all are bound so the kernel cannot hand out one port twice.
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      const server = createServer();
      return new Promise<Server>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server));
      });
    }),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}
