// Part 1 of `pnpm bench cluster`: devices connected and reporting across server nodes. A real
// cluster on this machine (test/cluster's modules: PostgreSQL, Redis, nginx stream in front of
// N nodes of the real CLI), then raw MQTT devices from several load processes (the storm bench's
// storm-worker.mjs: a signed login, SUBSCRIBE, a state report at QoS 1, then one every
// --report-seconds). Logins are spread over --ramp-seconds; once every device is in (or the ramp's
// budget is over) the reports are counted for --hold-seconds. Per node: RSS and CPU.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeKeys } from '@flotilla/fleet-simulator';
import { generateTrustSet } from '@flotilla/protocol';
import { startCluster } from '../../test/cluster/cluster-start.mjs';
import { adminToken } from '../../test/cluster/nodes.mjs';
import { tempDir, waitFor } from '../../test/cluster/processes.mjs';
import { cpuSeconds, peakRssBytes } from '../fleet/server-process.mjs';
import { bulkRegister, startWorker } from '../fleet/storm-load.mjs';

/** Devices per load process: its sockets stay well under one process's 20,000 files. */
export const DEVICES_PER_WORKER = 8000;
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null;
const mib = (b) => Math.round(b / 2 ** 20);

function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * @param {{ devices: number, nodes: number, rampSeconds: number, reportSeconds: number,
 *   holdSeconds: number, log: (s: string) => void }} o
 */
export async function devicesBench(o) {
  const work = tempDir('flotilla-bench-cluster-');
  const keysDir = join(work, 'keys-TEST-ONLY');
  await writeKeys(keysDir, generateTrustSet({ now: new Date(), rootKeys: 1, rootThreshold: 1 }));
  const { nginx, nodes, pg, redis } = await startCluster({
    store: 'postgres',
    nodes: o.nodes,
    keep: false,
    work,
    keysDir,
    log: (s) => o.log(`  ${s}`),
    // Two connections per device, up to 16,384 per nginx worker (each under the file limit), with room for an uneven spread.
    nginxWorkers: Math.ceil((2 * o.devices + 2000) / 12_000),
  });
  const workers = [];
  try {
    const token = adminToken(nodes[0]);
    const mqttPort = Number(new URL(nginx.mqttUrl).port);
    const processes = Math.ceil(o.devices / DEVICES_PER_WORKER);
    for (let k = 0; k < processes; k++) {
      const count = Math.floor(o.devices / processes) + (k < o.devices % processes ? 1 : 0);
      workers.push(
        startWorker({
          mode: 'flotilla',
          count,
          index: k,
          idPrefix: `c${k + 1}`,
          broker: { host: '127.0.0.1', port: mqttPort },
        }),
      );
    }
    const credentials = (await Promise.all(workers.map((w) => w.ready))).flat();
    o.log(`  ${credentials.length} devices from ${processes} load processes; registering them`);
    await bulkRegister(nginx.apiUrl, token, credentials);
    await Promise.all(workers.map((w) => w.request({ cmd: 'prepare' })));

    const pids = nodes.map((n) => n.child.proc.pid);
    const stats = async (times = false) => {
      const all = await Promise.all(workers.map((w) => w.request({ cmd: 'stats', times })));
      if (all.some((s) => !s.ok)) throw new Error('a load process stopped answering');
      return all.map((s) => s.stats);
    };
    const sum = (list, key) => list.reduce((a, s) => a + s[key], 0);
    const nodeDied = () => {
      const dead = nodes.find((n) => !n.child.running());
      return dead ? `${dead.id} exited: ${dead.child.logTail()}` : null;
    };

    const t0 = Date.now();
    await Promise.all(
      workers.map((w) =>
        w.request({ cmd: 'go', spreadMs: o.rampSeconds * 1000, reportEveryMs: o.reportSeconds * 1000 }),
      ),
    );
    // Ramp: until every device is in, or the ramp plus 3 minutes is over (counted, not failed).
    let maxIn = 0;
    let lastShown = 0;
    const rampBudgetMs = o.rampSeconds * 1000 + 180_000;
    await waitFor(
      'devices logging in',
      async () => {
        const n = sum(await stats(), 'in');
        maxIn = Math.max(maxIn, n);
        if (Date.now() - lastShown > 10_000) {
          lastShown = Date.now();
          o.log(
            `  ${n.toLocaleString('en')} / ${o.devices.toLocaleString('en')} in after ${Math.round((Date.now() - t0) / 1000)} s`,
          );
        }
        return n >= o.devices || Date.now() - t0 > rampBudgetMs;
      },
      { budgetMs: rampBudgetMs + 30_000, everyMs: 1000, abort: nodeDied },
    );
    const rampSeconds = (Date.now() - t0) / 1000;
    const login = await stats(true);
    const loginMs = login.flatMap((s) => s.loginMs).sort((a, b) => a - b);
    const failures = {};
    for (const s of login)
      for (const [k, v] of Object.entries(s.failures)) failures[k] = (failures[k] ?? 0) + v;

    // Hold: every device in keeps reporting; acknowledged reports and node CPU over the window.
    o.log(`  holding ${o.holdSeconds} s: reports every ${o.reportSeconds} s per device`);
    const acked0 = sum(login, 'acked');
    const cpu0 = pids.map(cpuSeconds);
    const h0 = Date.now();
    let minIn = Number.POSITIVE_INFINITY;
    let last = login;
    await waitFor(
      'the hold window',
      async () => {
        last = await stats();
        const n = sum(last, 'in');
        maxIn = Math.max(maxIn, n);
        minIn = Math.min(minIn, n);
        return Date.now() - h0 >= o.holdSeconds * 1000;
      },
      { budgetMs: o.holdSeconds * 1000 + 60_000, everyMs: 1000, abort: nodeDied },
    );
    const holdSeconds = (Date.now() - h0) / 1000;
    const perNode = nodes.map((n, i) => ({
      node: n.id,
      rssMiB: mib(rssBytes(pids[i])),
      peakRssMiB: mib(peakRssBytes(pids[i])),
      cpuPercent: Math.round(((cpuSeconds(pids[i]) - cpu0[i]) / holdSeconds) * 100),
    }));
    return {
      nodes: o.nodes,
      devices: o.devices,
      loadProcesses: processes,
      connectedAtOnce: maxIn,
      connectedThroughoutHold: Number.isFinite(minIn) ? minIn : 0,
      rampSeconds: +rampSeconds.toFixed(1),
      loginP50Seconds: loginMs.length ? +(quantile(loginMs, 0.5) / 1000).toFixed(2) : null,
      loginP99Seconds: loginMs.length ? +(quantile(loginMs, 0.99) / 1000).toFixed(2) : null,
      attempts: sum(login, 'attempts'),
      failures,
      reportSeconds: o.reportSeconds,
      reportsAckedPerSecond: Math.round((sum(last, 'acked') - acked0) / holdSeconds),
      perNode,
      postgres: pg ? 'local' : null,
      redis: redis ? 'local' : null,
    };
  } finally {
    await Promise.all(workers.map((w) => w.request({ cmd: 'close' }).catch(() => undefined)));
    for (const w of workers) w.kill();
    await Promise.all(nodes.map((n) => n.child.kill('SIGTERM')));
    await nginx.child.kill('SIGTERM');
    await redis?.child.kill('SIGTERM');
    await pg?.destroy();
  }
}
