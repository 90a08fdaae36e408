import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { testImage } from './fleet.js';
import {
  cleanupDirs,
  eventMessage,
  stateMessage,
  TEST_ADMIN,
  type TestDevice,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/server-child.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const children: ChildProcess[] = [];
const clients: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})));
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  cleanupDirs();
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function spawnServer(dataDir: string, port: number, mqttPort: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CHILD, dataDir, String(port), String(mqttPort)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server child did not start')), 20_000);
    child.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('"ready":true')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
  });
  return child;
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

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
    if (!existsSync(DIST)) throw new Error('run `npx tsc -b` first: the killed server runs compiled code');
    const dataDir = tempDir();
    const [port, mqttPort] = [await freePort(), await freePort()];
    let child = await spawnServer(dataDir, port, mqttPort);
    const api = `http://127.0.0.1:${port}`;
    const h = { authorization: `Bearer ${TEST_ADMIN}` };
    const shas: Record<string, string> = {};
    for (const [v, img] of [
      ['1.0.0', testImage(0, 256 * 1024)],
      ['1.1.0', testImage(1, 256 * 1024)],
    ] as const) {
      const r = await fetch(
        `${api}/api/v1/releases/build?name=TEST-ONLY-os&version=${v}&securityVersion=1&compatible=TEST-ONLY-board&format=raw&partitionSize=${img.length}&input=image`,
        { method: 'POST', headers: { ...h, 'content-type': 'application/octet-stream' }, body: img },
      );
      expect(r.status).toBe(201);
      shas[v] = ((await r.json()) as { image: { sha256: string } }).image.sha256;
    }
    const devs = Array.from({ length: 4 }, (_, i) => testDevice(`TEST-ONLY-kill-${i}`));
    for (const d of devs) {
      const r = await fetch(`${api}/api/v1/devices/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          deviceId: d.id,
          publicKey: d.publicKeyHex,
          proof: d.password(),
          hardware: 'TEST-ONLY-board',
        }),
      });
      expect(r.status, await r.clone().text()).toBe(200);
      const acc = await fetch(`${api}/api/v1/devices/${d.id}/accept`, { method: 'POST', headers: h });
      expect(acc.status, await acc.text()).toBe(200);
    }
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const offers = new Map<string, string>();
    const cs = devs.map((d) => {
      const c = device(url, d);
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
    const created = await fetch(`${api}/api/v1/rollouts`, {
      method: 'POST',
      headers: { ...h, 'content-type': 'application/json' },
      body: JSON.stringify({
        release: '1.1.0',
        policy: { target: {}, phases: [{ count: 1 }, { percent: 100 }] },
      }),
    });
    expect(created.status).toBe(201);
    const rolloutId = ((await created.json()) as { id: string }).id;
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
    await kill(child);
    const ackedAtKill = new Set(acked);
    for (let k = 0; k < 25; k++) burst();

    child = await spawnServer(dataDir, port, mqttPort);
    await Promise.all(pending);
    expect(acked.size).toBe(n);

    // The canary finishes the deployment it was offered before the crash.
    const canary = cs[devs.findIndex((d) => d.id === canaryId)]!;
    for (const kind of ['offer-accepted', 'downloaded', 'installed', 'rebooting', 'healthy'])
      await canary.publishAsync(
        `flotilla/v1/devices/${canaryId}/events`,
        JSON.stringify(eventMessage(`canary-${kind}`, ++seq, kind, { deploymentId: canaryDep })),
        { qos: 1 },
      );
    await waitFor(() => offers.size === devs.length, 15_000, 'offers to the rest after restart');
    for (const [id, dep] of offers) {
      if (id === canaryId) continue;
      const c = cs[devs.findIndex((d) => d.id === id)]!;
      for (const kind of ['installed', 'healthy'])
        await c.publishAsync(
          `flotilla/v1/devices/${id}/events`,
          JSON.stringify(eventMessage(`${id}-${kind}`, ++seq, kind, { deploymentId: dep })),
          {
            qos: 1,
          },
        );
    }
    const status = async () =>
      (
        (await (await fetch(`${api}/api/v1/rollouts/${rolloutId}`, { headers: h })).json()) as {
          status: string;
        }
      ).status;
    await waitFor(async () => (await status()) === 'completed', 15_000, 'rollout completed');
    await kill(child);

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
