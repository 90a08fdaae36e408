// The Flotilla server in a child process for the fleet benchmarks (devices and server must not
// share one event loop, nor one 20,000-file limit), and a sampler of its own Prometheus metrics.
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { httpServerHandle, newToken } from '@flotilla/fleet-simulator';

const say = (s) => process.stderr.write(`${s}\n`);

/**
 * Starts server-child.mjs. The handle drives the server over HTTP; kill() is SIGKILL, restart()
 * starts it again on the same ports and data; died() names an exit nobody asked for; pid() and
 * cpuSeconds() read the live process.
 */
export async function spawnServer(opts) {
  const token = newToken();
  let child;
  let info;
  let expectExit = false;
  let died = null;
  const boot = async (ports) => {
    child = fork(fileURLToPath(new URL('./server-child.mjs', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // FLOTILLA_BENCH_CPU_PROF=dir: a V8 CPU profile of the server, written when it stops.
      execArgv: [
        '--trace-uncaught',
        // FLOTILLA_BENCH_SERVER_FLAGS: extra Node flags for the server (e.g. GC tuning experiments).
        ...(process.env.FLOTILLA_BENCH_SERVER_FLAGS?.split(' ').filter(Boolean) ?? []),
        ...(process.env.FLOTILLA_BENCH_CPU_PROF
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FLOTILLA_BENCH_CPU_PROF}`]
          : []),
      ],
    });
    // A bench that dies must not leave its server running (it holds ports and a data dir).
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.on('exit', (code, signal) => {
      process.off('exit', reap);
      say(`• server process exited (code ${code}, signal ${signal})`);
      if (!expectExit) died = { code, signal };
    });
    child.send({ logLevel: 'error', rolloutTickMs: 1000, ...opts, adminToken: token, ...ports });
    const msg = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });
    if (!msg.ok) throw new Error(msg.error);
    expectExit = false;
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
      if (child.exitCode !== null || child.signalCode !== null) return;
      expectExit = true;
      child.send('stop');
      await new Promise((r) => child.once('exit', r));
    },
  });
  handle.token = token;
  handle.died = () => died;
  handle.pid = () => child.pid;
  handle.kill = async () => {
    expectExit = true;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  };
  handle.restart = async () => {
    info = await boot({ port: Number(api.port), mqttPort: info.mqtt.port });
  };
  return handle;
}

/** User + system CPU seconds of a live process, from /proc (Linux). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in USER_HZ (100 on Linux)
}

/** Peak resident memory of a live process (VmHWM), in bytes. */
export function peakRssBytes(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Samples the server's own Prometheus metrics (RSS, CPU, reports, connections, bytes served). */
export function sampler(apiUrl) {
  const peak = { rss: 0 };
  const read = async () => {
    const text = await (await fetch(`${apiUrl}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
    const sum = (name) => {
      let n = 0;
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm')))
        n += Number(m[1]);
      return n;
    };
    const s = {
      rss: sum('flotilla_process_resident_memory_bytes'),
      cpu: sum('flotilla_process_cpu_seconds_total'),
      reports: sum('flotilla_reports_stored_total') + sum('flotilla_reports_duplicate_total'),
      offers: sum('flotilla_offers_sent_total'),
      connected: sum('flotilla_devices_connected'),
      served: sum('flotilla_artifact_bytes_served_total'),
    };
    peak.rss = Math.max(peak.rss, s.rss);
    return s;
  };
  let timer = null;
  return {
    read,
    peak,
    start() {
      // A scrape walks every open file and counts the fleet in SQL: not too often at 10k devices.
      timer = setInterval(() => read().catch(() => undefined), 2000);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
