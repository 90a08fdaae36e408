import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type SimServer, type SimServerOptions, startSimServer } from '@flotilla/fleet-simulator';
import type { ListenOptions } from '@flotilla/server';

const NGINX = '/usr/sbin/nginx';
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

/** The shipped template with its {{…}} values filled in, as its header tells an operator to do. */
export function renderArtifactsConf(values: {
  listen: string;
  flotillaApi: string;
  artifactDir: string;
  accessLog: string;
}): string {
  const text = readFileSync(ARTIFACTS_CONF, 'utf8')
    .replaceAll('{{LISTEN}}', values.listen)
    .replaceAll('{{FLOTILLA_API}}', values.flotillaApi)
    .replaceAll('{{ARTIFACT_DIR}}', values.artifactDir)
    .replaceAll('{{ACCESS_LOG}}', values.accessLog);
  const left = /\{\{[A-Z_]+\}\}/.exec(text.replace(/^#.*$/gm, ''));
  if (left) throw new Error(`deploy/nginx/flotilla-artifacts.conf: ${left[0]} is not filled in`);
  return text;
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
      // As root the workers would drop to nobody, who cannot read a 0700 temp dir.
      ...(process.getuid?.() === 0 ? ['user root root;'] : []),
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      'events { worker_connections 256; }',
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
  const errors: string[] = [];
  const proc: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  proc.stderr?.on('data', (d: Buffer) => errors.push(d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  // Up when it answers (its own 404 for anything but artifacts); bounded in count and time.
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) {
      const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '';
      await close();
      throw new Error(`nginx exited: ${errors.join('')}${log}`);
    }
    const up = await fetch(`${url}/`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 404,
      () => false,
    );
    if (up) break;
    if (i >= 200) {
      await close();
      throw new Error('nginx did not answer within 200 tries');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
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
