// Debian's nginx as a local process for `cluster-test`, running the shipped configurations of
// deploy/nginx/ exactly as their headers tell an operator to fill them in: the API spread over
// the nodes (flotilla-api.conf), artifact downloads sent by nginx (flotilla-artifacts.conf) and
// MQTT over TCP spread over the nodes (flotilla-mqtt-stream.conf, the `stream` module).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, spawnGroup, tempDir, waitFor } from './processes.mjs';

const NGINX = '/usr/sbin/nginx';
/** Debian's dynamic stream module (libnginx-mod-stream). */
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
const DEPLOY = new URL('../../deploy/nginx/', import.meta.url);
/** The internal location of flotilla-artifacts.conf (the server's `--artifact-accel-redirect`). */
export const ACCEL_PREFIX = '/_flotilla/artifacts/';

/** What is missing to run nginx with its stream module here, as [what, Debian package] (null: nothing). */
export function nginxMissing() {
  if (!existsSync(NGINX)) return ['nginx', 'nginx'];
  if (!existsSync(STREAM_MODULE)) return ['the nginx stream module', 'libnginx-mod-stream'];
  return null;
}

/**
 * A shipped template with its {{…}} values filled in; a value left out is an error.
 * @param {string} name  file in deploy/nginx/
 * @param {Record<string, string>} values
 */
export function renderTemplate(name, values) {
  // Only configuration lines: the comments show the placeholders, and a value of several lines
  // put into a comment would leave its later lines uncommented.
  const text = readFileSync(new URL(name, DEPLOY), 'utf8')
    .split('\n')
    .map((line) => {
      if (/^\s*#/.test(line)) return line;
      for (const [key, value] of Object.entries(values)) line = line.replaceAll(`{{${key}}}`, value);
      return line;
    })
    .join('\n');
  const left = /\{\{[A-Z_]+\}\}/.exec(text.replace(/^\s*#.*$/gm, ''));
  if (left) throw new Error(`deploy/nginx/${name}: ${left[0]} is not filled in`);
  return text;
}

/**
 * Whether the shipped MQTT stream configuration starts each connection with a PROXY protocol
 * line (`proxy_protocol on;`): the nodes must then read it (`--mqtt-proxy-protocol`).
 */
export function streamSpeaksProxyProtocol() {
  const text = readFileSync(new URL('flotilla-mqtt-stream.conf', DEPLOY), 'utf8');
  return /^\s*proxy_protocol\s+on\s*;/m.test(text);
}

/** @param {string[]} nodes host:port each */
const upstreamLines = (nodes) => nodes.map((n) => `server ${n} max_fails=1 fail_timeout=10s;`).join('\n    ');

/**
 * @typedef {object} ClusterNginx
 * @property {string} apiUrl        the API over every node
 * @property {string} artifactsUrl  artifact downloads (nginx sends the file)
 * @property {string} mqttUrl       MQTT over every node (mqtt://127.0.0.1:port)
 * @property {import('./processes.mjs').Child} child
 * @property {string} dir
 */

/**
 * nginx in front of `nodes` (each `{ api, mqtt }` as host:port), serving artifacts from
 * `artifactDir`. Listens on free loopback ports; up when every port accepts a connection.
 * `workers` (default 1) of 16,384 connections each: each MQTT device holds two (its own and the
 * upstream's), and a worker cannot hold more files than the process limit it inherits.
 * @param {{ nodes: { api: string, mqtt: string }[], artifactDir: string, workers?: number }} o
 * @returns {Promise<ClusterNginx>}
 */
export async function startClusterNginx(o) {
  const missing = nginxMissing();
  if (missing) throw new Error(`${missing[0]} is not installed (apt-get install ${missing[1]})`);
  const dir = tempDir('flotilla-nginx-');
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const [apiPort, artifactsPort, mqttPort] = [await freePort(), await freePort(), await freePort()];
  const apiNodes = o.nodes.map((n) => n.api);
  writeFileSync(
    join(dir, 'flotilla-api.conf'),
    renderTemplate('flotilla-api.conf', {
      LISTEN: `127.0.0.1:${apiPort}`,
      API_NODES: upstreamLines(apiNodes),
    }),
  );
  writeFileSync(
    join(dir, 'flotilla-artifacts.conf'),
    renderTemplate('flotilla-artifacts.conf', {
      LISTEN: `127.0.0.1:${artifactsPort}`,
      // The template's upstream names one API address (`server {{FLOTILLA_API}};`): with several
      // nodes the others follow as further `server` lines, so the authorisation survives a node.
      FLOTILLA_API: apiNodes.join(' max_fails=1 fail_timeout=10s;\n    server '),
      ARTIFACT_DIR: o.artifactDir,
      ACCESS_LOG: join(dir, 'artifacts-access.log'),
    }),
  );
  writeFileSync(
    join(dir, 'flotilla-mqtt-stream.conf'),
    renderTemplate('flotilla-mqtt-stream.conf', {
      LISTEN: `127.0.0.1:${mqttPort}`,
      MQTT_NODES: upstreamLines(o.nodes.map((n) => n.mqtt)),
    }),
  );
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      `load_module ${STREAM_MODULE};`,
      // As root the workers would drop to nobody, who cannot read a 0700 temp dir.
      ...(process.getuid?.() === 0 ? ['user root root;'] : []),
      `worker_processes ${o.workers ?? 1};`,
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      // Every device holds one MQTT connection through nginx, and one upstream each.
      'worker_rlimit_nofile 65536;',
      'events { worker_connections 16384; }',
      'http {',
      `  access_log ${join(dir, 'access.log')};`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => `  ${d}_temp_path ${join(dir, d)};`),
      `  include ${join(dir, 'flotilla-api.conf')};`,
      `  include ${join(dir, 'flotilla-artifacts.conf')};`,
      '}',
      `stream { include ${join(dir, 'flotilla-mqtt-stream.conf')}; }`,
      '',
    ].join('\n'),
  );
  const child = spawnGroup(
    'nginx',
    NGINX,
    ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    { logFile: join(dir, 'nginx.out') },
  );
  const errorLog = () => {
    const file = join(dir, 'error.log');
    return `${child.logTail()}${existsSync(file) ? readFileSync(file, 'utf8').slice(-2000) : ''}`;
  };
  for (const port of [apiPort, artifactsPort, mqttPort])
    await waitFor(`nginx accepting on port ${port}`, () => accepts(port), {
      budgetMs: 30_000,
      abort: () => (child.running() ? null : `nginx exited: ${errorLog()}`),
    });
  return {
    apiUrl: `http://127.0.0.1:${apiPort}`,
    artifactsUrl: `http://127.0.0.1:${artifactsPort}`,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    child,
    dir,
  };
}

/** True once something accepts a TCP connection on the loopback port. @param {number} port @returns {Promise<boolean>} */
export function accepts(port) {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.setTimeout(2000, () => s.destroy());
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}
