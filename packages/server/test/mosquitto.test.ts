import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { renderMosquittoAcl } from '@flotilla/protocol';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoHash, type RunningServer } from '../src/index.js';
import {
  auth,
  cleanupDirs,
  connect,
  eventMessage,
  startTestServer,
  stateMessage,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

/**
 * The same device checks against Mosquitto (from its Debian package, on loopback) in place of the
 * embedded broker: devices use static per-device credentials the server issues, the ACL is
 * rendered from protocol's table, and the server is a privileged client.
 */
const MOSQUITTO = '/usr/sbin/mosquitto';
const SERVER_USER = 'flotilla-server';
const SERVER_PASSWORD = 'TEST-ONLY-server-password';
let mosq: ChildProcess | undefined;
let server: RunningServer | undefined;
let url: string;
const clients: MqttClient[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  if (!existsSync(MOSQUITTO)) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const dir = tempDir('flotilla-mosq-');
  const port = await freePort();
  const passwordFile = join(dir, 'passwd');
  const aclFile = join(dir, 'acl');
  writeFileSync(passwordFile, `${SERVER_USER}:${mosquittoHash(SERVER_PASSWORD)}\n`, { mode: 0o600 });
  writeFileSync(aclFile, renderMosquittoAcl(SERVER_USER), { mode: 0o600 });
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwordFile}`,
      `acl_file ${aclFile}`,
      'persistence false',
      'log_dest none',
      '',
    ].join('\n'),
  );
  mosq = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  url = `mqtt://127.0.0.1:${port}`;
  await waitFor(
    () =>
      connect(url, { clientId: 'probe', username: SERVER_USER, password: SERVER_PASSWORD }).then(
        (c) => {
          c.end(true);
          return true;
        },
        () => false,
      ),
    10_000,
    'mosquitto up',
  );
  server = await startTestServer({
    mqttPort: null,
    broker: {
      kind: 'external',
      connect: { url, username: SERVER_USER, password: SERVER_PASSWORD },
      mosquitto: {
        passwordFile,
        aclFile,
        serverUser: SERVER_USER,
        serverPassword: SERVER_PASSWORD,
        reload: () => mosq!.kill('SIGHUP'),
      },
    },
  });
}, 30_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
  await server?.close();
  mosq?.kill('SIGTERM');
  cleanupDirs();
});

/** Registers (proof of key), is accepted by an operator, registers again and gets its MQTT credential. */
async function provision(id: string): Promise<{ username: string; password: string }> {
  const d = testDevice(id);
  const body = { deviceId: id, publicKey: d.publicKeyHex, hardware: 'TEST-ONLY-board' };
  const first = await server!.app.inject({
    method: 'POST',
    url: '/api/v1/devices/register',
    payload: { ...body, proof: d.password() },
  });
  expect(first.json().mqtt).toBeUndefined(); // pending devices get nothing
  await server!.app.inject({ method: 'POST', url: `/api/v1/devices/${id}/accept`, headers: auth() });
  const again = await server!.app.inject({
    method: 'POST',
    url: '/api/v1/devices/register',
    payload: { ...body, proof: d.password() },
  });
  return again.json().mqtt;
}

/** Connects, retrying briefly: Mosquitto reloads its password file on SIGHUP asynchronously. */
async function connectAs(id: string, cred: { username: string; password: string }): Promise<MqttClient> {
  let last: unknown;
  for (let i = 0; i < 50; i++) {
    try {
      const c = await connect(url, { clientId: id, ...cred, clean: false });
      clients.push(c);
      return c;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw last;
}

const stored = (id: string, eventId: string) =>
  (
    server!.ctx.store.db
      .prepare('SELECT COUNT(*) AS n FROM device_events WHERE device_id = ? AND event_id = ?')
      .get(id, eventId) as { n: number }
  ).n;

describe('with Mosquitto as the broker', () => {
  let credA: { username: string; password: string };
  let credB: { username: string; password: string };
  let a: MqttClient;

  beforeAll(async () => {
    credA = await provision('TEST-ONLY-mq-a');
    credB = await provision('TEST-ONLY-mq-b');
    a = await connectAs('TEST-ONLY-mq-a', credA);
  });

  it('issues a credential only to accepted devices, hashed in the password file', async () => {
    expect(credA.username).toBe('TEST-ONLY-mq-a');
    expect(credA.password.length).toBeGreaterThan(20);
  });

  it('refuses an unauthenticated client and a wrong password', async () => {
    await expect(connect(url, { clientId: 'x' })).rejects.toThrow(/Not authorized|Bad username/);
    await expect(
      connect(url, { clientId: 'TEST-ONLY-mq-a', username: 'TEST-ONLY-mq-a', password: credB.password }),
    ).rejects.toThrow(/Not authorized|Bad username/);
  });

  it('stores reports through the server subscription, once per event id', async () => {
    await a.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-a/state',
      JSON.stringify(stateMessage(3, { version: '2.0.0' })),
      { qos: 1 },
    );
    const e = JSON.stringify(eventMessage('mq-1', 1, 'log'));
    await a.publishAsync('flotilla/v1/devices/TEST-ONLY-mq-a/events', e, { qos: 1 });
    await a.publishAsync('flotilla/v1/devices/TEST-ONLY-mq-a/events', e, { qos: 1 });
    await waitFor(
      () => server!.ctx.store.devices.get('TEST-ONLY-mq-a')?.version === '2.0.0',
      5000,
      'state stored',
    );
    await waitFor(() => stored('TEST-ONLY-mq-a', 'mq-1') === 1, 5000, 'event stored');
    await new Promise((r) => setTimeout(r, 200));
    expect(stored('TEST-ONLY-mq-a', 'mq-1')).toBe(1);
  });

  it('drops device A publishing as device B (the ACL stops it at the broker)', async () => {
    await a.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-b/events',
      JSON.stringify(eventMessage('forged', 1, 'healthy')),
      { qos: 1 },
    );
    await a.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-a/events',
      JSON.stringify(eventMessage('after-forged', 2, 'log')),
      { qos: 1 },
    );
    await waitFor(() => stored('TEST-ONLY-mq-a', 'after-forged') === 1, 5000, 'marker event');
    expect(stored('TEST-ONLY-mq-b', 'forged')).toBe(0);
  });

  it("delivers nothing of B's topics, # or $SYS to A, and B's commands only to B", async () => {
    const got: string[] = [];
    a.on('message', (t) => got.push(t));
    for (const t of ['flotilla/v1/devices/TEST-ONLY-mq-b/commands', '#', '$SYS/#'])
      await a.subscribeAsync(t, { qos: 1 }).catch(() => {});
    await a.subscribeAsync('flotilla/v1/devices/TEST-ONLY-mq-a/commands', { qos: 1 });
    const b = await connectAs('TEST-ONLY-mq-b', credB);
    const gotB: string[] = [];
    b.on('message', (t) => gotB.push(t));
    await b.subscribeAsync('flotilla/v1/devices/TEST-ONLY-mq-b/commands', { qos: 1 });
    await b.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-b/events',
      JSON.stringify(eventMessage('b-1', 1, 'log')),
      { qos: 1 },
    );
    await server!.ctx
      .transport()!
      .publishCommand('TEST-ONLY-mq-b', { schemaVersion: 1, type: 'reboot-request', commandId: 'c1' });
    await waitFor(() => gotB.length === 1, 5000, 'command to B');
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toEqual([]);
  });

  it('drops malformed and wrong-schema payloads without harm', async () => {
    await a.publishAsync('flotilla/v1/devices/TEST-ONLY-mq-a/events', '{"schemaVersion":', { qos: 1 });
    await a.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-a/events',
      JSON.stringify({ ...eventMessage('bad', 1, 'log'), kind: 'x' }),
      { qos: 1 },
    );
    await a.publishAsync(
      'flotilla/v1/devices/TEST-ONLY-mq-a/events',
      JSON.stringify(eventMessage('ok-after', 3, 'log')),
      { qos: 1 },
    );
    await waitFor(() => stored('TEST-ONLY-mq-a', 'ok-after') === 1, 5000, 'good event after bad ones');
    expect(stored('TEST-ONLY-mq-a', 'bad')).toBe(0);
  });

  it('revokes the credential when a device is decommissioned', async () => {
    await server!.app.inject({
      method: 'POST',
      url: '/api/v1/devices/TEST-ONLY-mq-b/decommission',
      headers: auth(),
    });
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await connect(url, { clientId: 'TEST-ONLY-mq-b2', ...credB }).then(
        (c) => {
          c.end(true);
          return false;
        },
        () => true,
      );
      if (!refused) await new Promise((r) => setTimeout(r, 100));
    }
    expect(refused).toBe(true);
  });
});
