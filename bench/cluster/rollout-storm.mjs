// Part of the ingest part of `pnpm bench cluster`: a rollout storm, deployment events/s stored on
// SQLite and on PostgreSQL. N devices each hold a deployment offered by one running rollout; in
// each round every device reports its next install milestone (offer-accepted … healthy) through
// the server's own ReportIngestor and event hook (the path MQTT reports take), so every event is
// stored and moves its deployment. The engine's runner is stopped: no pass runs meanwhile (the
// engine part measures passes). Every deployment is checked to have ended healthy.
import { median, submitAll } from '../store/ingest-round.mjs';
import { fillDeployments, fillDeviceId, fillDevices, insertRelease } from './fill-store.mjs';
import { onFreshServer } from './ingest.mjs';

/** What an agent reports from an accepted offer to a healthy boot, one milestone per round. */
const MILESTONES = [
  'offer-accepted',
  'download-progress',
  'downloaded',
  'install-progress',
  'installed',
  'rebooting',
  'healthy',
];

/** @param {{ store: 'sqlite' | 'postgres', devices: number, database?: string }} o */
function stormOn(o) {
  return onFreshServer({ database: o.database, nodeId: 'bench-storm' }, async (server) => {
    const { store, rollouts: runner } = server.ctx;
    runner.stop();
    const now = Date.now();
    await fillDevices(store, o.devices, now);
    await insertRelease(store, now);
    const rollout = await runner.create({ release: '1.1.0', policy: { phases: [{}] } }, 'bench');
    const deps = await fillDeployments(store, rollout.id, o.devices, now);
    if (o.store === 'postgres') await store.sql.run('ANALYZE');
    const rates = [];
    const t0 = performance.now();
    for (const [r, kind] of MILESTONES.entries()) {
      const ts = new Date(now + r * 1000).toISOString();
      const reports = deps.map((deploymentId, i) => ({
        deviceId: fillDeviceId(i),
        channel: 'events',
        message: {
          schemaVersion: 1,
          type: 'event',
          eventId: `storm-${r}`,
          seq: r,
          ts,
          kind,
          deploymentId,
          ...(kind === 'healthy' ? { version: '1.1.0' } : {}),
        },
      }));
      const t = performance.now();
      await submitAll(server.ingestor, reports);
      rates.push(o.devices / ((performance.now() - t) / 1000));
    }
    const seconds = (performance.now() - t0) / 1000;
    const healthy = (await store.deployments.forRollout(rollout.id)).filter(
      (d) => d.state === 'healthy',
    ).length;
    const events = await store.events.count();
    if (healthy !== o.devices || events !== o.devices * MILESTONES.length)
      throw new Error(
        `FLOTILLA_ERR_BENCH: ${o.store} ended with ${healthy} of ${o.devices} deployments healthy, ${events} events stored`,
      );
    return {
      medianEventsPerSecond: Math.round(median(rates)),
      eventsPerSecond: Math.round((o.devices * MILESTONES.length) / seconds),
      rounds: rates.map(Math.round),
    };
  });
}

/** @param {{ devices: number, pg: { createDatabase: (name: string) => Promise<string> }, log: (s: string) => void }} o */
export async function rolloutStormBench(o) {
  o.log(
    `  rollout storm: SQLite, ${o.devices.toLocaleString('en')} devices × ${MILESTONES.length} milestones`,
  );
  const sqlite = await stormOn({ store: 'sqlite', devices: o.devices });
  o.log('  rollout storm: PostgreSQL, the same');
  const database = await o.pg.createDatabase('storm');
  const postgres = await stormOn({ store: 'postgres', devices: o.devices, database });
  return { devices: o.devices, eventsPerDevice: MILESTONES.length, sqlite, postgres };
}
