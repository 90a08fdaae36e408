// The ingest bench's workload, shared by `pnpm bench ingest` (SQLite) and `pnpm bench cluster`
// (SQLite vs PostgreSQL): N accepted devices, then rounds in which every device sends one state
// report and one event through the server's own ReportIngestor (the path MQTT reports take).

export const benchDeviceId = (i) => `dev-${String(i).padStart(7, '0')}`;
const sha = (i) => i.toString(16).padStart(64, '0');

/** N accepted devices through the store's own insert, in one transaction. */
export async function insertIngestDevices(store, n, now) {
  await store.tx(async (tx) => {
    for (let i = 0; i < n; i++)
      await tx.devices.insert({
        id: benchDeviceId(i),
        publicKey: sha(i),
        status: 'accepted',
        hardware: 'board-0',
        now,
      });
  });
}

/** Submits reports to the ingestor; resolves when all are acknowledged (stored). */
export function submitAll(ingestor, reports) {
  return new Promise((resolve, reject) => {
    let pending = reports.length;
    const done = (err) => {
      if (err) reject(err);
      else if (--pending === 0) resolve();
    };
    for (const r of reports) if (!ingestor.submit(r, done)) return reject(new Error('ingest queue full'));
  });
}

/** Submits one state report and one event per device (round r); resolves when all are acknowledged. */
export function ingestRound(ingestor, n, r, now) {
  const ts = new Date(now + r * 1000).toISOString();
  const reports = [];
  for (let i = 0; i < n; i++) {
    const deviceId = benchDeviceId(i);
    const state = {
      schemaVersion: 1,
      type: 'state',
      seq: r,
      ts,
      version: `1.${r}.0`,
      imageSha256: sha(r),
      securityVersion: 0,
      activeSlot: 'a',
      agentState: 'idle',
      deploymentId: null,
      lastError: null,
    };
    const event = {
      schemaVersion: 1,
      type: 'event',
      eventId: `bench-${r}-${i}`,
      seq: r,
      ts,
      kind: 'log',
      deploymentId: null,
      detail: { round: r },
    };
    reports.push(
      { deviceId, channel: 'state', message: state },
      { deviceId, channel: 'events', message: event },
    );
  }
  return submitAll(ingestor, reports);
}

/** Whether the store holds every report of `rounds` rounds over n devices (events and last state). */
export async function ingestLanded(store, n, rounds) {
  const events = await store.events.count();
  const current =
    (await store.devices.countsByVersion()).find((v) => v.version === `1.${rounds}.0`)?.count ?? 0;
  return { events, devicesOnLastVersion: current, complete: events === n * rounds && current === n };
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
