import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { testImage } from './fleet.js';
import {
  cleanupDirs,
  stateMessage,
  TEST_ADMIN,
  type TestDevice,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

// An offer recorded in the store but lost with the broker's memory (server SIGKILLed before the
// device read it) must reach the device as soon as it is back: not after the per-device timeout.

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

/**
 * Like the agent: persistent session, subscribes to its commands after every CONNACK
 * (`subscribeAfterMs` later: a slow link's round trip, so a message published at CONNACK time
 * cannot win the race against the SUBSCRIBE by luck).
 */
async function agentLike(
  url: string,
  d: TestDevice,
  onOffer: (deploymentId: string) => void,
  subscribeAfterMs = 0,
): Promise<MqttClient> {
  const c = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: d.id,
    username: d.id,
    password: d.password(),
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  c.on('error', () => {});
  c.on('message', (_t, p) => {
    const cmd = JSON.parse(p.toString());
    if (cmd.type === 'offer') onOffer(cmd.offer.signed.deploymentId);
  });
  clients.push(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => {
      setTimeout(
        () =>
          c.subscribe(`flotilla/v1/devices/${d.id}/commands`, { qos: 1 }, (err) =>
            err ? reject(err) : resolve(),
          ),
        subscribeAfterMs,
      );
    });
    c.once('error', reject);
  });
  return c;
}

describe('an offer lost with a SIGKILLed server', () => {
  it('is re-sent when the device reconnects and subscribes, long before the device timeout', async () => {
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
      expect(r.status, await r.clone().text()).toBe(201);
      shas[v] = ((await r.json()) as { image: { sha256: string } }).image.sha256;
    }
    const d = testDevice('TEST-ONLY-resend-0');
    const reg = await fetch(`${api}/api/v1/devices/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        deviceId: d.id,
        publicKey: d.publicKeyHex,
        proof: d.password(),
        hardware: 'TEST-ONLY-board',
      }),
    });
    expect(reg.status, await reg.clone().text()).toBe(200);
    expect((await fetch(`${api}/api/v1/devices/${d.id}/accept`, { method: 'POST', headers: h })).status).toBe(
      200,
    );

    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const before: string[] = [];
    const first = await agentLike(url, d, (id) => before.push(id));
    await first.publishAsync(
      `flotilla/v1/devices/${d.id}/state`,
      JSON.stringify(stateMessage(1, { version: '1.0.0', imageSha256: shas['1.0.0'] })),
      { qos: 1 },
    );
    // The device stops reading its socket: the offer can be written but never reaches it.
    first.stream.pause();

    const created = await fetch(`${api}/api/v1/rollouts`, {
      method: 'POST',
      headers: { ...h, 'content-type': 'application/json' },
      body: JSON.stringify({
        release: '1.1.0',
        policy: { target: {}, phases: [{ percent: 100 }], deviceTimeoutSeconds: 3600 },
      }),
    });
    expect(created.status).toBe(201);
    const rolloutId = ((await created.json()) as { id: string }).id;
    let offered: string | null = null;
    await waitFor(
      async () => {
        const r = await fetch(`${api}/api/v1/rollouts/${rolloutId}/deployments`, { headers: h });
        const items = ((await r.json()) as { items: { id: string; state: string }[] }).items;
        offered = items.find((x) => x.state === 'offered')?.id ?? null;
        return offered !== null;
      },
      10_000,
      'offer recorded',
    );
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    first.stream.destroy();
    expect(before).toEqual([]);

    child = await spawnServer(dataDir, port, mqttPort);
    const after: string[] = [];
    await agentLike(url, d, (id) => after.push(id), 300);
    // The deployment's timeout is an hour and there are no retries: only the re-send can deliver it.
    await waitFor(() => after.length > 0, 10_000, 'offer re-sent after reconnect');
    expect(after[0]).toBe(offered);
  }, 60_000);
});
