import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SimServer, type SimServerOptions, startSimServer } from '@flotilla/fleet-simulator';
import type { ListenOptions } from '@flotilla/server';
import { accepts } from './nginx.mjs';

const NGINX = '/usr/sbin/nginx';
/** Debian's dynamic stream module (libnginx-mod-stream). */
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
/** The MQTT load balancer operators install (deploy/nginx/): the tests run exactly this file. */
export const MQTT_STREAM_CONF = new URL('../../deploy/nginx/flotilla-mqtt-stream.conf', import.meta.url);
/** The configuration operators install (deploy/nginx/): the tests run exactly this file. */
export const ARTIFACTS_CONF = new URL('../../deploy/nginx/flotilla-artifacts.conf', import.meta.url);
/** The internal location of the shipped configuration (the server's `artifactAccelRedirect`). */
export const ACCEL_PREFIX = '/_flotilla/artifacts/';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A shipped template with its {{…}} values filled in, as its header tells an operator to do. */
function renderTemplate(file: URL, values: Record<string, string>): string {
  let text = readFileSync(file, 'utf8');
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{{${name}}}`, value);
  const left = /\{\{[A-Z_]+\}\}/.exec(text.replace(/^\s*#.*$/gm, ''));
  if (left) throw new Error(`${file.pathname}: ${left[0]} is not filled in`);
  return text;
}

export function renderArtifactsConf(values: {
  listen: string;
  flotillaApi: string;
  artifactDir: string;
  accessLog: string;
}): string {
  return renderTemplate(ARTIFACTS_CONF, {
    LISTEN: values.listen,
    FLOTILLA_API: values.flotillaApi,
    ARTIFACT_DIR: values.artifactDir,
    ACCESS_LOG: values.accessLog,
  });
}

/** Why the MQTT load balancer cannot run here (null: it can). */
export function nginxStreamMissing(): string | null {
  if (!existsSync(NGINX)) return 'nginx is not installed (apt-get install nginx libnginx-mod-stream)';
  if (!existsSync(STREAM_MODULE))
    return 'the nginx stream module is not installed (apt-get install libnginx-mod-stream)';
  return null;
}

/** One line of the shipped `flotilla_artifacts` access log format. */
export interface AccessLine {
  method: string;
  uri: string;
  status: number;
  bytes: number;
  range: string;
  serverStatus: string;
  aud: string;
}

export interface Nginx {
  url: string;
  /** The access log so far, parsed. */
  accessLog(): AccessLine[];
  close(): Promise<void>;
}

/**
 * Debian's nginx as a local process on a loopback port: a minimal main configuration (pid, temp
 * paths and logs in a temp dir) that includes the shipped `flotilla-artifacts.conf`.
 */
export async function startNginx(o: {
  flotillaApi: string;
  artifactDir: string;
  port?: number;
}): Promise<Nginx> {
  if (!existsSync(NGINX)) throw new Error('nginx is not installed (apt-get install nginx)');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-nginx-'));
  const port = o.port ?? (await freePort());
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const accessLog = join(dir, 'access.log');
  writeFileSync(
    join(dir, 'flotilla-artifacts.conf'),
    renderArtifactsConf({
      listen: `127.0.0.1:${port}`,
      flotillaApi: o.flotillaApi,
      artifactDir: o.artifactDir,
      accessLog,
    }),
  );
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      ...mainConf(dir),
      'http {',
      `  client_body_temp_path ${join(dir, 'client_body')};`,
      `  proxy_temp_path ${join(dir, 'proxy')};`,
      `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
      `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
      `  scgi_temp_path ${join(dir, 'scgi')};`,
      `  include ${join(dir, 'flotilla-artifacts.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const url = `http://127.0.0.1:${port}`;
  // Up when it answers (its own 404 for anything but artifacts).
  const close = await launchNginx(dir, () =>
    fetch(`${url}/`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 404,
      () => false,
    ),
  );
  return {
    url,
    accessLog: () =>
      (existsSync(accessLog) ? readFileSync(accessLog, 'utf8') : '')
        .split('\n')
        .filter(Boolean)
        .map(parseAccessLine),
    close,
  };
}

/** Runs nginx on `dir/nginx.conf` until `ready` says it is up (bounded); resolves with its stop. */
async function launchNginx(dir: string, ready: () => Promise<boolean>): Promise<() => Promise<void>> {
  const errors: string[] = [];
  const proc: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  proc.stderr?.on('data', (d: Buffer) => errors.push(d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const close = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) {
      const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
      await close();
      throw new Error(`nginx exited: ${errors.join('')}${log}`);
    }
    if (await ready()) break;
    if (i >= 200) {
      await close();
      throw new Error('nginx did not answer within 200 tries');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return close;
}

/** The common top of a test nginx.conf: pid, logs and temp paths in `dir`. */
function mainConf(dir: string): string[] {
  return [
    // As root the workers would drop to nobody, who cannot read a 0700 temp dir.
    ...(process.getuid?.() === 0 ? ['user root root;'] : []),
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 1024; }',
  ];
}

export interface NginxStream {
  /** Where devices connect. */
  host: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Debian's nginx with its stream module as a local process: the shipped
 * `flotilla-mqtt-stream.conf` spreading MQTT connections over `nodes` (host:port each).
 */
export async function startNginxStream(o: { nodes: string[]; port?: number }): Promise<NginxStream> {
  const missing = nginxStreamMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-nginx-stream-'));
  const port = o.port ?? (await freePort());
  writeFileSync(
    join(dir, 'flotilla-mqtt-stream.conf'),
    renderTemplate(MQTT_STREAM_CONF, {
      LISTEN: `127.0.0.1:${port}`,
      MQTT_NODES: o.nodes.map((n) => `server ${n} max_fails=1 fail_timeout=10s;`).join(' '),
    }),
  );
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      `load_module ${STREAM_MODULE};`,
      ...mainConf(dir),
      `stream { include ${join(dir, 'flotilla-mqtt-stream.conf')}; }`,
      '',
    ].join('\n'),
  );
  // Up when it accepts a TCP connection on the listen port.
  const close = await launchNginx(dir, () => accepts(port));
  return { host: '127.0.0.1', port, close };
}

function parseAccessLine(line: string): AccessLine {
  const m = /"(\w+) (\S+)" (\d+) (\d+) range="([^"]*)" server=(\S+) aud=(\S*)/.exec(line);
  if (!m) throw new Error(`unexpected access log line: ${line}`);
  return {
    method: m[1]!,
    uri: m[2]!,
    status: Number(m[3]),
    bytes: Number(m[4]),
    range: m[5]!,
    serverStatus: m[6]!,
    aud: m[7]!,
  };
}

/**
 * A real server in this process behind the shipped nginx configuration: offers send devices to
 * nginx, which asks the server and sends the bytes. Closing the server stops nginx too.
 */
export async function serverBehindNginx(
  x: Pick<SimServerOptions, 'dataDir' | 'keysDir'>,
  extra: Partial<ListenOptions> = {},
): Promise<{ sim: SimServer; nginx: Nginx }> {
  const apiPort = await freePort();
  const nginx = await startNginx({
    flotillaApi: `127.0.0.1:${apiPort}`,
    artifactDir: join(x.dataDir, 'artifacts'),
  });
  let sim: SimServer;
  try {
    sim = await startSimServer({
      ...x,
      port: apiPort,
      serverOptions: { artifactBaseUrl: nginx.url, artifactAccelRedirect: ACCEL_PREFIX, ...extra },
      artifactOrigin: nginx.url,
    });
  } catch (err) {
    await nginx.close();
    throw err;
  }
  const close = sim.close.bind(sim);
  sim.close = async () => {
    await close();
    await nginx.close();
  };
  return { sim, nginx };
}
