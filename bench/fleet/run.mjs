#!/usr/bin/env node
// Fleet benchmark: N simulated devices (real agents, light images) spread over P worker processes,
// against a real server in its own child process. Devices are pre-registered through the admin
// bulk route, so "time to connect" is boot + agent start + MQTT connect + signed-password auth.
// Then one rollout to every device (deltas, unlimited concurrency unless --max-concurrent), and
// with --storm a reconnect storm: the server is SIGKILLed and restarted, every device reconnects.
// Prints: time to connect, time to 100 % healthy, messages/s, server peak memory and CPU, bytes.
// Usage: node bench/fleet/run.mjs --devices N [--processes P] [--storm] [--no-rollout]
//        [--max-concurrent M] [--boot-concurrency B] [--tweetnacl-devices]
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatBytes, prepareWorld, sleep } from '@flotilla/fleet-simulator';
import { benchArgs, usageError } from '../args.mjs';
import { sampler, spawnServer } from './server-process.mjs';

const USAGE =
  'usage: node bench/fleet/run.mjs --devices N (1-20000) [--processes P] [--storm] [--no-rollout] [--max-concurrent M] [--boot-concurrency B] [--download-timeout-ms T] [--tweetnacl-devices]';
const { values: opts } = benchArgs(USAGE, {
  options: {
    devices: { type: 'string', default: '1000' },
    processes: { type: 'string' },
    storm: { type: 'boolean', default: false },
    'no-rollout': { type: 'boolean', default: false },
    'max-concurrent': { type: 'string' },
    'boot-concurrency': { type: 'string', default: '200' },
    'download-timeout-ms': { type: 'string', default: '120000' },
    'tweetnacl-devices': { type: 'boolean', default: false },
  },
});
const devices = Number(opts.devices);
const processes = Number(opts.processes ?? String(Math.max(1, Math.ceil(devices / 2500))));
const maxConcurrent = Number(opts['max-concurrent'] ?? String(devices));
const bootConcurrency = Number(opts['boot-concurrency']);
const downloadTimeoutMs = Number(opts['download-timeout-ms']);
const ints = [devices, processes, maxConcurrent, bootConcurrency, downloadTimeoutMs];
if (!ints.every((n) => Number.isInteger(n) && n >= 1) || devices > 20000 || processes > devices)
  usageError(
    USAGE,
    'every number must be a positive integer, --devices at most 20000 and --processes at most --devices',
  );
const storm = opts.storm;
const rollout = !opts['no-rollout'];
const say = (s) => process.stderr.write(`${s}\n`);
const secs = (t) => +((performance.now() - t) / 1000).toFixed(2);

/** A worker process holding one share of the fleet; request() talks to it over IPC. */
function startWorker(setup) {
  const child = fork(fileURLToPath(new URL('./fleet-worker.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: ['--max-old-space-size=4096'],
  });
  let seq = 0;
  const waiting = new Map();
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`fleet worker exited (${code}, ${signal})`)));
    child.on('message', (m) => {
      if ('ready' in m) return m.ready ? resolve() : reject(new Error(m.error));
      const w = waiting.get(m.re);
      waiting.delete(m.re);
      if (m.ok) w?.resolve(m);
      else w?.reject(new Error(m.error));
    });
  });
  child.send(setup);
  return {
    ready,
    request: (cmd) =>
      new Promise((resolve, reject) => {
        const id = ++seq;
        waiting.set(id, { resolve, reject });
        child.send({ cmd, id });
      }),
    kill: () => child.exitCode === null && child.kill('SIGKILL'),
  };
}

const workDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-fleet-'));
const result = { devices, processes, machine: { cpus: cpus().length } };
let world;
const workers = [];
let failed = false;
try {
  say(`bench: ${devices} devices in ${processes} processes, light images, server in a child process`);
  world = await prepareWorld({
    workDir,
    keepWorkDir: true,
    size: 'light',
    server: (o) => spawnServer({ dataDir: o.dataDir, keysDir: o.keysDir }),
    log: (l) => say(`• ${l}`),
  });
  const { server, firmware, trust } = world;
  const metrics = sampler(server.apiUrl);
  metrics.start();

  let t = performance.now();
  const base = firmware.releases.get('1.0.0');
  for (let k = 0; k < processes; k++) {
    const count = Math.floor(devices / processes) + (k < devices % processes ? 1 : 0);
    workers.push(
      startWorker({
        dir: join(workDir, `fleet-${k + 1}`),
        count,
        idPrefix: `w${k + 1}`,
        hardware: world.hardware,
        baseImage: base.imagePath,
        factoryRelease: base.manifestPath,
        format: firmware.format,
        slotSize: firmware.partitionSize,
        trustRoot: trust.root,
        mqtt: server.mqtt,
        artifactOrigin: server.artifactOrigin,
        apiUrl: server.apiUrl,
        token: server.token,
        timeScale: 0.05,
        bootConcurrency,
        fastCrypto: !opts['tweetnacl-devices'],
        downloadTimeoutMs,
      }),
    );
  }
  await Promise.all(workers.map((w) => w.ready));
  result.setupSeconds = secs(t);
  say(`• ${devices} boards set up and pre-registered (bulk) in ${result.setupSeconds} s`);

  const waitConnected = async (what, timeoutMs) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const died = world.server.died();
      if (died) throw new Error(`server died (code ${died.code}, signal ${died.signal})`);
      const s = await metrics.read().catch(() => null);
      if (s && s.connected >= devices) return;
      if (Date.now() > end) throw new Error(`timed out: ${what} (${s?.connected ?? '?'} / ${devices})`);
      await sleep(200);
    }
  };
  t = performance.now();
  const powered = Promise.all(workers.map((w) => w.request('powerOn')));
  await waitConnected('all connected', 1_800_000);
  result.connectSeconds = secs(t);
  await powered;
  say(`• ${devices} devices booted, connected and authenticated in ${result.connectSeconds} s`);

  const fleetStats = async () => {
    const all = await Promise.all(workers.map((w) => w.request('stats')));
    const out = { bytes: 0, fullEquivalent: 0, versions: {}, rss: 0 };
    for (const { stats: s } of all) {
      out.bytes += s.bytes;
      out.fullEquivalent += s.fullEquivalent;
      out.rss += s.rss;
      for (const [v, n] of Object.entries(s.versions)) out.versions[v] = (out.versions[v] ?? 0) + n;
    }
    return out;
  };

  if (rollout) {
    await world.publish('1.1.0');
    const before = await metrics.read();
    t = performance.now();
    const id = await server.startRollout({
      name: 'bench',
      release: '1.1.0',
      phases: [{ name: 'all', percent: 100, errorThreshold: 1 }],
      maxConcurrent,
      deviceTimeoutSeconds: 3600,
    });
    let view;
    let last = '';
    for (const end = Date.now() + 3_600_000; ; ) {
      const died = world.server.died();
      if (died) throw new Error(`server died (code ${died.code}, signal ${died.signal})`);
      try {
        view = await server.rollout(id);
      } catch (err) {
        // A busy server may drop the bench's own poll (full accept queue): count it and poll again.
        result.pollErrors = (result.pollErrors ?? 0) + 1;
        if (result.pollErrors > 50 || !view) throw err;
        await sleep(1000);
        continue;
      }
      const line = `  ${view.status} healthy ${view.totals.healthy}/${devices} in flight ${view.totals.inFlight} failed ${view.totals.failed}`;
      if (line !== last) say(`${line} (${secs(t)} s)`);
      last = line;
      if (['completed', 'paused', 'aborted'].includes(view.status) || Date.now() > end) break;
      await sleep(devices > 2000 ? 3000 : 1000); // each poll summarises the whole fleet
    }
    const s = secs(t);
    if (view.totals.failed > 0) {
      // Say why devices failed (top reasons), so a failed run explains itself.
      const reasons = new Map();
      for (const d of await server.deployments(id))
        if (d.failureReason) reasons.set(d.failureReason, (reasons.get(d.failureReason) ?? 0) + 1);
      result.failureReasons = Object.fromEntries([...reasons].sort((a, b) => b[1] - a[1]).slice(0, 5));
      say(`• failure reasons: ${JSON.stringify(result.failureReasons)}`);
    }
    const after = await metrics.read();
    const fs = await fleetStats();
    result.rollout = {
      status: view.status,
      healthy: view.totals.healthy,
      failed: view.totals.failed,
      seconds: s,
      maxConcurrent,
      reportsPerSecond: Math.round((after.reports - before.reports) / s),
      offersSent: after.offers - before.offers,
      serverCpuSeconds: +(after.cpu - before.cpu).toFixed(2),
      bytesServed: after.served - before.served,
    };
    result.bytes = { sent: fs.bytes, fullEquivalent: fs.fullEquivalent };
    result.versions = fs.versions;
    result.lost = devices - view.totals.healthy;
    result.devicesRssBytes = fs.rss;
    say(`• rollout ${view.status}: ${view.totals.healthy}/${devices} healthy in ${s} s`);
    if (result.lost > 0 || fs.versions['1.1.0'] !== devices) failed = true;
  }

  if (storm) {
    say('• reconnect storm: server killed (SIGKILL) and restarted; every device reconnects');
    await server.kill();
    t = performance.now();
    await server.restart();
    result.restartSeconds = secs(t);
    const up = performance.now();
    await waitConnected('all reconnected', 600_000);
    result.reconnectSeconds = secs(t);
    result.reconnectAfterRestartSeconds = secs(up);
    say(`• ${devices} devices reconnected and authenticated ${result.reconnectSeconds} s after the kill`);
  }
  await metrics.read().catch(() => undefined);
  metrics.stop();
  result.serverPeakRssBytes = metrics.peak.rss;
  say('');
  say(`devices / processes     ${devices} / ${processes}`);
  say(`set-up + bulk register  ${result.setupSeconds} s`);
  say(`time to connect         ${result.connectSeconds} s`);
  if (result.rollout) {
    const r = result.rollout;
    say(`time to 100 % healthy   ${r.seconds} s (${r.status}, ${r.healthy} healthy, ${result.lost} not)`);
    say(`reports/s (server)      ${r.reportsPerSecond} (+ ${r.offersSent} offers sent)`);
    say(`server CPU in rollout   ${r.serverCpuSeconds} s`);
    say(`bytes served (server)   ${formatBytes(r.bytesServed)}`);
    say(
      `bytes downloaded        ${formatBytes(result.bytes.sent)} (full images: ${formatBytes(result.bytes.fullEquivalent)})`,
    );
  }
  say(`server peak RSS         ${formatBytes(result.serverPeakRssBytes)}`);
  if (result.reconnectSeconds !== undefined)
    say(
      `reconnect storm         ${result.reconnectAfterRestartSeconds} s after the restart (${result.reconnectSeconds} s after SIGKILL; restart took ${result.restartSeconds} s)`,
    );
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  failed = true;
  say(`bench failed: ${err?.stack ?? err}`);
} finally {
  await Promise.race([
    Promise.all(workers.map((w) => w.request('close').catch(() => undefined))),
    sleep(60_000),
  ]);
  for (const w of workers) w.kill();
  await world?.close().catch(() => undefined);
  await rm(workDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
