// Redis and nginx (stream) as local processes for the broker benchmarks, on free loopback ports,
// their files in a temp dir. nginx runs the shipped deploy/nginx/flotilla-mqtt-stream.conf.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });

const accepts = (port) =>
  new Promise((r) => {
    const s = netConnect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      r(true);
    });
    s.on('error', () => r(false));
  });

/** Runs `cmd args` until `port` accepts connections (bounded); resolves with its stop. */
async function run(what, cmd, args, port, dir) {
  const proc = spawn(cmd, args, { stdio: 'ignore' });
  process.once('exit', () => proc.kill('SIGKILL'));
  for (let i = 0; !(await accepts(port)); i++) {
    if (i > 200 || proc.exitCode !== null) throw new Error(`${what} did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    pid: () => proc.pid,
    async close() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** redis-server without persistence (apt-get install redis-server). */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const r = await run('redis-server', 'redis-server', [...args, '--dir', dir], port, dir);
  return { ...r, url: `redis://127.0.0.1:${port}` };
}

/** nginx spreading MQTT over `nodes` (host:port each), with PROXY protocol (apt-get install nginx libnginx-mod-stream). */
export async function startNginxStream(nodes) {
  if (!existsSync(STREAM_MODULE))
    throw new Error('the nginx stream module is missing (apt-get install libnginx-mod-stream)');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bench-nginx-'));
  const port = await freePort();
  const template = readFileSync(
    new URL('../../deploy/nginx/flotilla-mqtt-stream.conf', import.meta.url),
    'utf8',
  );
  writeFileSync(
    join(dir, 'mqtt.conf'),
    template
      .replaceAll('{{LISTEN}}', `127.0.0.1:${port}`)
      .replaceAll('{{MQTT_NODES}}', nodes.map((n) => `server ${n} max_fails=1 fail_timeout=10s;`).join(' ')),
  );
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      `load_module ${STREAM_MODULE};`,
      ...(process.getuid?.() === 0 ? ['user root root;'] : []),
      'worker_processes 1;',
      'worker_rlimit_nofile 65536;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} error;`,
      'events { worker_connections 60000; }',
      `stream { include ${join(dir, 'mqtt.conf')}; }`,
      '',
    ].join('\n'),
  );
  const args = ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'];
  const n = await run('nginx', '/usr/sbin/nginx', args, port, dir);
  return { ...n, mqtt: { host: '127.0.0.1', port } };
}
