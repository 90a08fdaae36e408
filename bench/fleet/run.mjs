#!/usr/bin/env node
// Fleet benchmark: N simulated devices (real agents, light images) against a real server running
// in a child process; one full rollout with deltas, then a reconnect storm (server restarted).
// Prints: time to connect, time to 100 % healthy, messages/s, server peak memory and CPU, bytes.
// Usage: node bench/fleet/run.mjs --devices N [--max-concurrent M] [--no-storm]
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  formatBytes,
  httpServerHandle,
  isTerminalRollout,
  newToken,
  startWorld,
  watchRollout,
} from '@flotilla/fleet-simulator';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const devices = Number(opt('--devices', '1000'));
if (!Number.isInteger(devices) || devices < 1 || devices > 20000) {
  console.error('usage: node bench/fleet/run.mjs --devices N (1-20000) [--json] [--no-storm]');
  process.exit(2);
}
const say = (s) => process.stderr.write(`${s}\n`);

/** The server in a child process; restart() kills it (SIGKILL) and starts it on the same ports. */
async function spawnServer(opts) {
  const token = newToken();
  let child;
  let info;
  const boot = async (ports) => {
    child = fork(fileURLToPath(new URL('./server-child.mjs', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('exit', (code, signal) => say(`• server process exited (code ${code}, signal ${signal})`));
    child.send({ ...opts, adminToken: token, ...ports, logLevel: 'error', rolloutTickMs: 1000 });
    const msg = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });
    if (!msg.ok) throw new Error(msg.error);
    return msg;
  };
  info = await boot({});
  const api = new URL(info.apiUrl);
  const handle = httpServerHandle({
    apiUrl: info.apiUrl,
    dashboardUrl: info.dashboardUrl,
    mqtt: info.mqtt,
    token,
    close: async () => {
      child.send('stop');
      await new Promise((r) => child.once('exit', r));
    },
  });
  handle.kill = async () => {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  };
  handle.restart = async () => {
    info = await boot({ port: Number(api.port), mqttPort: info.mqtt.port });
  };
  return handle;
}

/** Samples the server's own Prometheus metrics: RSS, CPU seconds, reports stored. */
function sampler(apiUrl) {
  const peak = { rss: 0 };
  let last = null;
  const read = async () => {
    const text = await (await fetch(`${apiUrl}/metrics`)).text();
    const v = (name) => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    last = {
      rss: v('flotilla_process_resident_memory_bytes'),
      cpu: v('flotilla_process_cpu_seconds_total'),
      reports: v('flotilla_reports_stored_total') + v('flotilla_reports_duplicate_total'),
      connected: v('flotilla_devices_connected'),
    };
    peak.rss = Math.max(peak.rss, last.rss);
    return last;
  };
  let timer = null;
  return {
    read,
    peak,
    start() {
      timer = setInterval(() => read().catch(() => undefined), 500);
    },
    stop() {
      clearInterval(timer);
    },
  };
}

const workDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-fleet-'));
const result = { devices, machine: { cpus: (await import('node:os')).cpus().length } };
let world;
try {
  say(`bench: ${devices} devices, light images, server in a child process`);
  world = await startWorld({
    devices,
    workDir,
    keepWorkDir: true,
    size: 'light',
    timeScale: 0.05,
    bootConcurrency: 100,
    server: (o) => spawnServer({ dataDir: o.dataDir, keysDir: o.keysDir }),
    log: (l) => say(`• ${l}`),
  });
  const { server, fleet } = world;
  const metrics = sampler(server.apiUrl);
  metrics.start();

  let t = performance.now();
  await fleet.powerOn(100);
  await fleet.waitFor('all online', async () => (await server.onlineCount()) >= devices, 600_000, 250);
  result.connectSeconds = +((performance.now() - t) / 1000).toFixed(2);
  say(`• ${devices} devices connected in ${result.connectSeconds} s`);

  await world.publish('1.1.0');
  const before = await metrics.read();
  t = performance.now();
  const id = await server.startRollout({
    name: 'bench',
    release: '1.1.0',
    phases: [{ name: 'all', percent: 100, errorThreshold: 1 }],
    maxConcurrent: Number(opt('--max-concurrent', '250')),
    deviceTimeoutSeconds: 3600,
  });
  const view = await watchRollout(server, fleet, id, {
    out: process.stderr,
    until: isTerminalRollout,
    timeoutMs: 3_600_000,
    pollMs: 1000,
  });
  const secs = (performance.now() - t) / 1000;
  const after = await metrics.read();
  result.rollout = {
    status: view.status,
    healthy: view.totals.healthy,
    failed: view.totals.failed,
    seconds: +secs.toFixed(2),
    reportsPerSecond: Math.round((after.reports - before.reports) / secs),
    serverCpuSeconds: +(after.cpu - before.cpu).toFixed(2),
  };
  result.bytes = { sent: fleet.bytesDownloaded(), fullEquivalent: fleet.fullEquivalentBytes() };
  result.lost = devices - view.totals.healthy;
  say(`• rollout ${view.status}: ${view.totals.healthy}/${devices} healthy in ${result.rollout.seconds} s`);

  if (!flag('--no-storm')) {
    say('• reconnect storm: server killed (SIGKILL) and restarted; every device reconnects');
    await server.kill();
    await server.restart();
    t = performance.now();
    await fleet.waitFor('all reconnected', async () => (await server.onlineCount()) >= devices, 600_000, 100);
    result.reconnectSeconds = +((performance.now() - t) / 1000).toFixed(2);
    say(`• ${devices} devices reconnected and authenticated in ${result.reconnectSeconds} s`);
  }
  await metrics.read().catch(() => undefined);
  metrics.stop();
  result.serverPeakRssBytes = metrics.peak.rss;
  say('');
  say(`devices                 ${devices}`);
  say(`time to connect         ${result.connectSeconds} s`);
  say(
    `time to 100 % healthy   ${result.rollout.seconds} s (${result.rollout.status}, ${result.rollout.healthy} healthy, ${result.lost} not)`,
  );
  say(`reports/s (server)      ${result.rollout.reportsPerSecond}`);
  say(`server CPU in rollout   ${result.rollout.serverCpuSeconds} s`);
  say(`server peak RSS         ${formatBytes(result.serverPeakRssBytes)}`);
  say(
    `bytes downloaded        ${formatBytes(result.bytes.sent)} (full images: ${formatBytes(result.bytes.fullEquivalent)})`,
  );
  if (result.reconnectSeconds !== undefined) say(`reconnect storm         ${result.reconnectSeconds} s`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await world?.close().catch(() => undefined);
  await rm(workDir, { recursive: true, force: true });
}
process.exit(result.lost === 0 ? 0 : 1);
