// A real PostgreSQL server (Debian's) in a temporary folder on a free
// loopback port, for the task handlers' tests. It runs as the postgres user
// when we are root (PostgreSQL refuses root) and dies with its parent.
import { execFileSync } from "node:child_process";
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
  freePorts,
  type ManagedProcess,
  startProcess,
  stopProcess,
} from "../controlplane/processes.ts";

function binDir(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const found = versions
    .map((v) => join(base, v, "bin"))
    .find((dir) => existsSync(join(dir, "postgres")));
  if (!found)
    throw new Error(
      "PostgreSQL server not found under /usr/lib/postgresql; install Debian's postgresql package (apt-get install postgresql)",
    );
  return found;
}

export interface PostgresServer {
  url: string;
  stop(): Promise<void>;
}

export interface PostgresOptions {
  /** More addresses to listen on besides loopback, e.g. a real node's bridge for pods. */
  listenAddresses?: string[];
  /** Networks allowed to connect without a password (besides loopback), e.g. 10.245.0.0/16. */
  trustNetworks?: string[];
}

export async function startPostgres(
  log: (line: string) => void = () => {},
  options: PostgresOptions = {},
): Promise<PostgresServer> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "nightshift-pg-"));
  const asRoot = userInfo().uid === 0;
  const setpriv = asRoot ? ["--reuid=postgres", "--regid=postgres", "--clear-groups"] : [];
  if (asRoot) {
    const ids = execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim();
    const gid = execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim();
    chownSync(dir, Number(ids), Number(gid));
  }
  const data = join(dir, "data");
  execFileSync(
    "setpriv",
    [
      ...setpriv,
      "--",
      join(bin, "initdb"),
      "-D",
      data,
      "-U",
      "nightshift",
      "--auth=trust",
      "-E",
      "UTF8",
      "--no-sync",
    ],
    { stdio: "ignore" },
  );
  for (const network of options.trustNetworks ?? [])
    appendFileSync(join(data, "pg_hba.conf"), `host all all ${network} trust\n`);
  const [port] = await freePorts(1);
  const proc: ManagedProcess = startProcess(
    "postgres",
    join(bin, "postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      `listen_addresses=${["127.0.0.1", ...(options.listenAddresses ?? [])].join(",")}`,
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
    ],
    join(dir, "postgres.log"),
    setpriv,
  );
  const url = `postgres://nightshift@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (error) {
      if (Date.now() > deadline || proc.child.exitCode !== null)
        throw new Error(
          `PostgreSQL did not start: ${(error as Error).message}; log in ${dir}/postgres.log`,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  log(`PostgreSQL ready at ${url}`);
  return {
    url,
    async stop() {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh database with the handlers' schema, for one test file. */
export async function createDatabase(
  adminUrl: string,
  name: string,
  schemaSql?: string,
): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = adminUrl.replace(/\/[^/]*$/, `/${name}`);
  if (schemaSql) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(schemaSql);
    await client.end();
  }
  return url;
}
