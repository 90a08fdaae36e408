// One case of the engine bench, in a process of its own so its memory figures are its own: a
// server on a fresh store (SQLite in a temp data dir, or the PostgreSQL database it is given)
// holding N accepted devices, one staged rollout over all of them, then passes of the rollout
// engine timed by the runner itself. Prints one JSON line.
// Usage (from engine.mjs): node engine-child.mjs <data dir> <sqlite|postgres> <devices> <passes> [database URL]
import { startServer } from '@flotilla/server';
import { fillDevices, insertRelease } from './fill-store.mjs';

// The data dir is the parent's temp dir: removed by the parent even when this process is killed.
const [dataDir, store, devicesArg, passesArg, database] = process.argv.slice(2);
const devices = Number(devicesArg);
const passes = Number(passesArg);
const say = (s) => process.stderr.write(`    ${store} ${devices.toLocaleString('en')}: ${s}\n`);
const mib = (b) => Math.round(b / 2 ** 20);
const rssMiB = () => mib(process.memoryUsage().rss);

const server = await startServer({
  dataDir,
  port: 0,
  mqttPort: 0,
  // FLOTILLA_BENCH_ENGINE_LOG=error: the server's log (on stdout, before the result line).
  logLevel: process.env.FLOTILLA_BENCH_ENGINE_LOG ?? 'silent',
  devKeys: true,
  ...(database ? { database, nodeId: 'bench-engine' } : {}),
  // Passes only when the bench asks: no timer pass (one hour), no retention sweep meanwhile.
  limits: { rolloutTickMs: 3_600_000, retentionIntervalMs: 0 },
});
try {
  const { store: s, rollouts: runner } = server.ctx;
  const now = Date.now();
  let t = performance.now();
  let shown = 0;
  await fillDevices(s, devices, now, (done) => {
    if (done - shown >= 100_000 || done === devices) {
      shown = done;
      say(`${done.toLocaleString('en')} devices stored`);
    }
  });
  const fillSeconds = (performance.now() - t) / 1000;
  if (store === 'postgres') await s.sql.run('ANALYZE');
  await insertRelease(s, now);
  const rssBefore = rssMiB();

  t = performance.now();
  const row = await runner.create(
    { release: '1.1.0', policy: { phases: [{ percent: 1 }, { percent: 10 }, {}] } },
    'bench',
  );
  const createSeconds = (performance.now() - t) / 1000;
  // The first pass assigns the canary phase. Every pass of one rollout runs after the one before
  // (the runner chains them), and the runner records what each cost: that figure is read.
  await runner.tick(row.id);
  const passCost = () => runner.lastPass.get(row.id).cost / 1000;
  const firstPassSeconds = passCost();
  const assigned = (await s.deployments.forRollout(row.id)).length;
  // A pass that fails is logged and retried by the runner, never thrown: no record means it failed.
  if (assigned !== devices)
    throw new Error(
      `FLOTILLA_ERR_BENCH: the first pass assigned ${assigned} of ${devices} devices (FLOTILLA_BENCH_ENGINE_LOG=error shows why)`,
    );
  const steady = [];
  let peakRss = rssMiB();
  for (let i = 0; i < passes; i++) {
    await runner.tick(row.id);
    steady.push(passCost());
    peakRss = Math.max(peakRss, rssMiB());
    say(`pass ${i + 1}/${passes}: ${passCost().toFixed(2)} s`);
  }
  const median = [...steady].sort((a, b) => a - b)[Math.floor(steady.length / 2)];
  // The canary phase reported healthy: the next pass moves the rollout to the next phase, writing
  // back among every deployment record of the rollout.
  const canary = await s.sql.run(
    "UPDATE deployments SET state = 'healthy' WHERE rollout_id = ? AND phase = 0",
    [row.id],
  );
  await runner.tick(row.id);
  const advancePassSeconds = passCost();
  peakRss = Math.max(peakRss, rssMiB());
  const phase = (await s.rollouts.get(row.id))?.runtime.currentPhase;
  if (phase !== 1)
    throw new Error(
      `FLOTILLA_ERR_BENCH: the pass after ${canary.changes} healthy canaries left the rollout in phase ${phase}`,
    );
  say(`phase advance: ${advancePassSeconds.toFixed(2)} s`);
  const status = (await s.rollouts.get(row.id))?.status;
  process.stdout.write(
    `${JSON.stringify({
      store,
      devices,
      fillSeconds: +fillSeconds.toFixed(1),
      createSeconds: +createSeconds.toFixed(2),
      firstPassSeconds: +firstPassSeconds.toFixed(2),
      deploymentRecords: assigned,
      medianPassSeconds: +median.toFixed(2),
      passes: steady.map((x) => +x.toFixed(2)),
      advancePassSeconds: +advancePassSeconds.toFixed(2),
      rolloutStatus: status,
      rssBeforeMiB: rssBefore,
      peakRssMiB: Math.max(peakRss, mib(process.resourceUsage().maxRSS * 1024)),
    })}\n`,
  );
} finally {
  await server.close();
}
