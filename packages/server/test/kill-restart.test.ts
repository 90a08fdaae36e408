import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { ChildServer, killChildServers } from './child-server.js';
import {
  cleanupDirs,
  endClients,
  eventMessage,
  stateMessage,
  type TestDevice,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

const clients: MqttClient[] = [];
afterEach(async () => {
  await endClients(clients);
  killChildServers();
  cleanupDirs();
});

/** A device that reconnects by itself with a fresh signed password and resends unacknowledged QoS 1 publishes. */
function device(url: string, d: TestDevice): MqttClient {
  const c = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: d.id,
    username: d.id,
    password: d.password(),
    clean: false,
    reconnectPeriod: 200,
    connectTimeout: 3000,
  });
  c.on('close', () => {
    c.options.password = d.password();
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

describe('a server killed with SIGKILL mid-rollout', () => {
  it('loses no acknowledged report, counts none twice, and the rollout goes on after restart', async () => {
    const dataDir = tempDir();
    const server = await ChildServer.start(dataDir);
    const shas = await server.buildTestReleases();
    const devs = Array.from({ length: 4 }, (_, i) => testDevice(`TEST-ONLY-kill-${i}`));
    for (const d of devs) await server.enroll(d);
    const offers = new Map<string, string>();
    const cs = devs.map((d) => {
      const c = device(server.mqttUrl, d);
      c.on('connect', () => void c.subscribe(`flotilla/v1/devices/${d.id}/commands`, { qos: 1 }));
      c.on('message', (_t, p) => {
        const cmd = JSON.parse(p.toString());
        if (cmd.type === 'offer') offers.set(d.id, cmd.offer.signed.deploymentId);
      });
      return c;
    });
    await waitFor(() => cs.every((c) => c.connected), 10_000, 'devices connected');
    let seq = 0;
    for (const [i, c] of cs.entries())
      await c.publishAsync(
        `flotilla/v1/devices/${devs[i]!.id}/state`,
        JSON.stringify(stateMessage(++seq, { version: '1.0.0', imageSha256: shas['1.0.0'] })),
        { qos: 1 },
      );
    const rolloutId = await server.createRollout('1.1.0', {
      target: {},
      phases: [{ count: 1 }, { percent: 100 }],
    });
    await waitFor(() => offers.size === 1, 10_000, 'canary offer');
    const [canaryId, canaryDep] = [...offers][0]!;

    // Devices report continuously; the server is killed while publishes are in flight.
    const acked = new Set<string>();
    const pending: Promise<void>[] = [];
    let n = 0;
    const burst = () => {
      for (const [i, c] of cs.entries()) {
        const eventId = `burst-${n++}`;
        const key = `${devs[i]!.id}/${eventId}`;
        pending.push(
          c
            .publishAsync(
              `flotilla/v1/devices/${devs[i]!.id}/events`,
              JSON.stringify(eventMessage(eventId, n, 'log')),
              { qos: 1 },
            )
            .then(() => void acked.add(key)),
        );
      }
    };
    for (let k = 0; k < 50; k++) burst();
    await new Promise((r) => setTimeout(r, 30));
    for (let k = 0; k < 50; k++) burst();
    await server.kill();
    const ackedAtKill = new Set(acked);
    for (let k = 0; k < 25; k++) burst();

    await server.restart();
    await Promise.all(pending);
    expect(acked.size).toBe(n);

    // The canary finishes the deployment it was offered before the crash.
    const canary = cs[devs.findIndex((d) => d.id === canaryId)]!;
    for (const kind of ['offer-accepted', 'downloaded', 'installed', 'rebooting', 'healthy'])
      await canary.publishAsync(
        `flotilla/v1/devices/${canaryId}/events`,
        JSON.stringify(
          eventMessage(`canary-${kind}`, ++seq, kind, { deploymentId: canaryDep, version: '1.1.0' }),
        ),
        { qos: 1 },
      );
    await waitFor(() => offers.size === devs.length, 15_000, 'offers to the rest after restart');
    for (const [id, dep] of offers) {
      if (id === canaryId) continue;
      const c = cs[devs.findIndex((d) => d.id === id)]!;
      for (const kind of ['installed', 'healthy'])
        await c.publishAsync(
          `flotilla/v1/devices/${id}/events`,
          JSON.stringify(eventMessage(`${id}-${kind}`, ++seq, kind, { deploymentId: dep, version: '1.1.0' })),
          {
            qos: 1,
          },
        );
    }
    const status = async () =>
      (
        (await (await server.fetch(`/api/v1/rollouts/${rolloutId}`)).json()) as {
          status: string;
        }
      ).status;
    await waitFor(async () => (await status()) === 'completed', 15_000, 'rollout completed');
    await server.kill();

    const db = new Database(join(dataDir, 'server.db'), { readonly: true });
    const rows = db
      .prepare(`SELECT device_id || '/' || event_id AS k FROM device_events WHERE event_id LIKE 'burst-%'`)
      .all() as { k: string }[];
    const stored = new Set(rows.map((r) => r.k));
    expect(rows.length).toBe(stored.size); // nothing counted twice
    for (const k of ackedAtKill) expect(stored.has(k), k).toBe(true); // nothing acknowledged was lost
    expect(stored.size).toBe(n); // every report sent made it, once
    const deps = db.prepare('SELECT state FROM deployments WHERE rollout_id = ?').all(rolloutId) as {
      state: string;
    }[];
    expect(deps.map((d) => d.state)).toEqual(devs.map(() => 'healthy'));
    db.close();
  }, 120_000);
});
