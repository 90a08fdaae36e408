import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../../../test/e2e/mosquitto.js';

/**
 * A real PostgreSQL for one test file, as a local process: `initdb` into a temp directory (run as
 * the `postgres` OS user when the tests run as root, as PostgreSQL refuses root), listening on
 * 127.0.0.1 at a free port and on a unix socket in that directory. Stopped and removed on
 * teardown, and killed at process exit if a test file never got to its teardown.
 */

/** The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin). */
export const postgresBin: string | undefined = (() => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], 'bin') : undefined;
})();

export const POSTGRES_MISSING =
  'PostgreSQL tests skipped: no /usr/lib/postgresql/*/bin/initdb — install the Debian package `postgresql`';

export interface TestPostgres {
  /** postgres://flotilla@127.0.0.1:<port>/<database> */
  url: string;
  /** The same database over the unix socket: postgres://flotilla@/<database>?host=<dir> */
  socketUrl: string;
  port: number;
  /** A fresh empty database on this server; returns its TCP URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server (fast shutdown) and waits; the data stays for start(). */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops and removes everything. */
  destroy(): Promise<void>;
}

const USER = 'flotilla';
const isRoot = process.getuid?.() === 0;
const running = new Set<string>();

function pgTool(tool: string, args: string[]): string {
  const cmd = join(postgresBin!, tool);
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
  } catch {
    return undefined;
  }
}

// A test file that dies before its teardown must not leave a server behind.
process.once('exit', () => {
  for (const dir of running) {
    const pid = postmasterPid(dir);
    if (pid) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {}
    }
  }
});

/** `durable: true` keeps PostgreSQL's fsync on (for measurements); tests leave it off. */
export async function startTestPostgres(
  database = 'flotilla',
  opts: { durable?: boolean } = {},
): Promise<TestPostgres> {
  if (!postgresBin) throw new Error(POSTGRES_MISSING);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-pg-'));
  const dataDir = join(dir, 'data');
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const port = await freePort();
  const log = join(dir, 'postgres.log');
  const settings = [
    `-c listen_addresses=127.0.0.1`,
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    '-c max_connections=60',
    // Throw-away data: no fsync, so tests on a shared 2-core box do not wait on the disk.
    ...(opts.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
  ].join(' ');
  const start = () => pgTool('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', log, '-o', settings]);
  const stop = () => pgTool('pg_ctl', ['stop', '-w', '-t', '60', '-m', 'fast', '-D', dataDir]);
  try {
    pgTool('initdb', ['-D', dataDir, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    start();
    running.add(dataDir);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${(err as { stderr?: string }).stderr ?? err}`);
  }
  const urlOf = (db: string) => `postgres://${USER}@127.0.0.1:${port}/${db}`;
  const createDatabase = async (name: string) => {
    const admin = new pg.Client({ connectionString: urlOf('postgres') });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`);
    } finally {
      await admin.end();
    }
    return urlOf(name);
  };
  await createDatabase(database);
  return {
    url: urlOf(database),
    socketUrl: `postgres://${USER}@/${database}?host=${encodeURIComponent(dir)}&port=${port}`,
    port,
    createDatabase,
    async stop() {
      stop();
      running.delete(dataDir);
    },
    async start() {
      start();
      running.add(dataDir);
    },
    async destroy() {
      try {
        if (running.has(dataDir)) stop();
      } finally {
        running.delete(dataDir);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
