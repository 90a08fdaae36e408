// A real PostgreSQL as a local process, for the server's PostgreSQL tests and `cluster-test`:
// `initdb` into a temp directory (run as the `postgres` OS user when we are root, as PostgreSQL
// refuses root), listening on 127.0.0.1 at a free port and on a unix socket in that directory.
// Stopped and removed by destroy(), and killed at process exit if a caller never got there.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, onExit, removeTempDir, tempDir } from './processes.mjs';

/** The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin). */
export const postgresBin = (() => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const majors = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(root, majors[0], 'bin') : undefined;
})();

/** Why PostgreSQL cannot run here (null: it can). */
export const POSTGRES_MISSING =
  'no /usr/lib/postgresql/*/bin/initdb — install the Debian package `postgresql`';

const USER = 'flotilla';
const isRoot = process.getuid?.() === 0;

/** @param {string} tool @param {string[]} args */
function pgTool(tool, args) {
  const cmd = join(/** @type {string} */ (postgresBin), tool);
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

/** @param {string} dataDir */
function postmasterPid(dataDir) {
  try {
    return Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * @typedef {object} LocalPostgres
 * @property {string} url        postgres://flotilla@127.0.0.1:<port>/<database>
 * @property {string} socketUrl  the same database over the unix socket
 * @property {number} port
 * @property {(name: string) => Promise<string>} createDatabase  a fresh empty database; its TCP URL
 * @property {() => Promise<void>} stop     fast shutdown, data kept for start()
 * @property {() => Promise<void>} start
 * @property {() => Promise<void>} destroy  stops and removes everything
 */

/**
 * `durable: true` keeps fsync on (for measurements); tests leave it off.
 * @param {string} [database]
 * @param {{ durable?: boolean, maxConnections?: number }} [opts]
 * @returns {Promise<LocalPostgres>}
 */
export async function startPostgres(database = 'flotilla', opts = {}) {
  if (!postgresBin) throw new Error(POSTGRES_MISSING);
  const dir = tempDir('flotilla-pg-');
  const dataDir = join(dir, 'data');
  if (isRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const port = await freePort();
  const log = join(dir, 'postgres.log');
  const settings = [
    '-c listen_addresses=127.0.0.1',
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    `-c max_connections=${opts.maxConnections ?? 60}`,
    // Throw-away data: no fsync, so tests on a shared 2-core box do not wait on the disk.
    ...(opts.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
  ].join(' ');
  /** @type {(() => void) | null} */
  let unhook = null;
  const start = () => {
    pgTool('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', log, '-o', settings]);
    // pg_ctl daemonizes the postmaster: it is no child of ours, so it is stopped at exit by pid.
    unhook = onExit(() => {
      const pid = postmasterPid(dataDir);
      if (pid) process.kill(pid, 'SIGQUIT');
    });
  };
  const stop = () => {
    unhook?.();
    unhook = null;
    pgTool('pg_ctl', ['stop', '-w', '-t', '60', '-m', 'fast', '-D', dataDir]);
  };
  try {
    pgTool('initdb', ['-D', dataDir, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    start();
  } catch (err) {
    removeTempDir(dir);
    const e = /** @type {{ stderr?: string }} */ (err);
    const logText = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '';
    throw new Error(`PostgreSQL did not start: ${e.stderr ?? err}${logText}`);
  }
  const urlOf = (/** @type {string} */ db) => `postgres://${USER}@127.0.0.1:${port}/${db}`;
  const createDatabase = async (/** @type {string} */ name) => {
    pgTool('createdb', ['-h', dir, '-p', String(port), '-U', USER, name]);
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
    },
    async start() {
      start();
    },
    async destroy() {
      try {
        if (unhook) stop();
      } finally {
        removeTempDir(dir);
      }
    },
  };
}
