// Flotilla server nodes as child processes of the real CLI (`flotilla server --json`), as an
// operator starts them: one data directory each, one shared artifact directory, one store.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { streamSpeaksProxyProtocol } from './nginx.mjs';
import { freePort, spawnGroup, waitFor } from './processes.mjs';

export const CLI = fileURLToPath(new URL('../../packages/cli/dist/bin/flotilla.js', import.meta.url));

/** The long options `flotilla server --help` lists (what this build of the server can do). */
export function serverFlags() {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
  const help = execFileSync(process.execPath, [CLI, 'server', '--help'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return new Set(help.match(/--[a-z][a-z-]*/g) ?? []);
}

/**
 * The server flags a run needs that this build lacks: a PostgreSQL store (`--database`), node
 * names (`--node-id`), with several nodes the broker shared through Redis (`--redis`), and the
 * PROXY protocol line when the shipped stream configuration sends one (`--mqtt-proxy-protocol`).
 * @param {{ store: 'postgres' | 'sqlite', nodes: number }} o
 */
export function missingServerFlags(o) {
  const need = [
    ...(o.store === 'postgres' ? ['--database', '--node-id'] : []),
    ...(o.nodes > 1 ? ['--redis', '--node-id'] : []),
    ...(streamSpeaksProxyProtocol() ? ['--mqtt-proxy-protocol'] : []),
  ];
  const have = serverFlags();
  return [...new Set(need)].filter((f) => !have.has(f));
}

/**
 * @typedef {object} ServerNode
 * @property {string} id        the node's name (`--node-id`; the process's own when not given)
 * @property {string} url       its API, http://127.0.0.1:port
 * @property {string} api       host:port of the API
 * @property {string} mqtt      host:port of MQTT over TCP
 * @property {string} dataDir
 * @property {import('./processes.mjs').Child} child
 */

/** Ports of a node, chosen before any node starts (nginx needs them all in its configuration). */
export async function nodePorts() {
  return { api: await freePort(), mqtt: await freePort() };
}

/**
 * Starts one node and waits for its `--json` line (bounded). Every node's
 * `<data-dir>/artifacts` is a symlink to `sharedArtifacts`: images and deltas written by any node
 * are served by all (and by nginx, from that directory). On PostgreSQL the nodes agree on one
 * URL-signing key through the database by themselves (the test relies on it: a download URL
 * signed by one node is checked by whichever node nginx asks); on a shared SQLite file nodes
 * after the first get the first's key file.
 * @param {{
 *   id: string, dir: string, ports: { api: number, mqtt: number }, keysDir: string,
 *   sharedArtifacts: string, firstNodeDir?: string, publicUrl: string, artifactBaseUrl: string,
 *   accelPrefix: string, database?: string, redis?: string, nodeIdFlag: boolean,
 * }} o
 * @returns {Promise<ServerNode>}
 */
export async function startNode(o) {
  const dataDir = join(o.dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(join(dataDir, 'artifacts')))
    symlinkSync(o.sharedArtifacts, join(dataDir, 'artifacts'), 'dir');
  const signingKey = o.firstNodeDir && !o.database ? join(o.firstNodeDir, 'url-signing.key') : null;
  if (signingKey && existsSync(signingKey)) copyFileSync(signingKey, join(dataDir, 'url-signing.key'));
  const args = [
    CLI,
    'server',
    '--json',
    '--data-dir',
    dataDir,
    '--host',
    '127.0.0.1',
    '--port',
    String(o.ports.api),
    '--mqtt-port',
    String(o.ports.mqtt),
    '--import-keys',
    o.keysDir,
    '--auto-accept',
    '--public-url',
    o.publicUrl,
    '--artifact-base-url',
    o.artifactBaseUrl,
    '--artifact-accel-redirect',
    o.accelPrefix,
    '--trust-proxy',
    '127.0.0.1',
    '--log-level',
    'warn',
    ...(o.nodeIdFlag ? ['--node-id', o.id] : []),
    ...(o.database ? ['--database', o.database] : []),
    ...(o.redis ? ['--redis', o.redis] : []),
    // nginx names each device's address in a PROXY protocol line (the failed-login limit counts devices).
    ...(streamSpeaksProxyProtocol() ? ['--mqtt-proxy-protocol'] : []),
  ];
  const child = spawnGroup(`node ${o.id}`, process.execPath, args, {
    logFile: join(o.dir, 'server.log'),
    stdout: 'pipe',
  });
  let out = '';
  child.proc.stdout?.on('data', (d) => {
    out += d;
  });
  const line = await waitFor(
    `server node ${o.id} starting`,
    () => out.split('\n').find((l) => l.startsWith('{')),
    {
      budgetMs: 180_000,
      abort: () => (child.running() ? null : `it exited: ${child.logTail()}${out.slice(-2000)}`),
    },
  );
  const summary = JSON.parse(line);
  const mqtt = new URL(summary.mqtt);
  return {
    id: o.id,
    url: summary.api,
    api: new URL(summary.api).host,
    mqtt: `${mqtt.hostname}:${mqtt.port}`,
    dataDir,
    child,
  };
}

/** The admin token the first node wrote at its first start (the store had none). */
export function adminToken(node) {
  const file = join(node.dataDir, 'admin-token');
  if (!existsSync(file)) throw new Error(`${file} is missing: the store already had tokens`);
  return readFileSync(file, 'utf8').trim();
}
