import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderMosquittoAcl } from '@flotilla/protocol';
import type { IClientOptions, MqttClient } from 'mqtt';
import { expect } from 'vitest';
import { freePort, writeMosquittoConf } from '../../../test/e2e/mosquitto.js';
import { type ListenOptions, mosquittoHash, type RunningServer } from '../src/index.js';
import type { BrokerDevice, DeviceBroker } from './device-broker-suite.js';
import { auth, connect, enroll, startTestServer, tempDir, testDevice, waitFor } from './helpers.js';

/** A TEST-ONLY self-signed certificate for 127.0.0.1, made at test time (never committed). */
export function testCertificate(): { cert: string; key: string } {
  const dir = tempDir('flotilla-tls-');
  const key = join(dir, 'TEST-ONLY-key.pem');
  const cert = join(dir, 'TEST-ONLY-cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ed25519',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-nodes',
      '-subj',
      '/CN=TEST-ONLY flotilla',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

/** The embedded aedes broker over plain TCP, TLS (mqtts, with the test CA) or WebSocket (/mqtt on the API port). */
export async function aedesBroker(
  transport: 'tcp' | 'tls' | 'ws',
  opts: Partial<ListenOptions> = {},
): Promise<DeviceBroker & { tls?: { cert: string; key: string } }> {
  const tls = transport === 'tls' ? testCertificate() : undefined;
  const server = await startTestServer({ ...(tls ? { tls, mqttsPort: 0 } : {}), ...opts });
  const url =
    transport === 'tcp'
      ? server.addresses.mqtt!
      : transport === 'tls'
        ? server.addresses.mqtts!
        : server.addresses.ws!;
  return {
    server,
    url,
    clientOptions: tls ? { ca: tls.cert } : {},
    deniedPublish: 'disconnect',
    ...(tls ? { tls } : {}),
    async addDevice(id: string): Promise<BrokerDevice> {
      const d = testDevice(id);
      await enroll(server, d);
      return {
        id,
        // A fresh signed password per connection, as the agent does.
        credentials: () => ({ username: id, password: d.password() }),
        // A well-formed password signed by a key that is not the device's.
        wrongCredentials: () => ({ username: id, password: testDevice(id).password() }),
      };
    },
    close: () => server.close(),
  };
}

const MOSQUITTO = '/usr/sbin/mosquitto';
const SERVER_USER = 'flotilla-server';
const SERVER_PASSWORD = 'TEST-ONLY-server-password';

/**
 * Mosquitto 2.0 (its Debian package) on loopback in place of the embedded broker: the server is
 * a privileged client, devices use the static credentials the server issues, the ACL is rendered
 * from protocol's table, and every change reloads Mosquitto with SIGHUP.
 */
export async function mosquittoBroker(
  opts: Partial<ListenOptions> = {},
): Promise<DeviceBroker & { passwordFile: string; provision(id: string): Promise<ProvisionResult> }> {
  if (!existsSync(MOSQUITTO)) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const dir = tempDir('flotilla-mosq-');
  const port = await freePort();
  const passwordFile = join(dir, 'passwd');
  const aclFile = join(dir, 'acl');
  writeFileSync(passwordFile, `${SERVER_USER}:${mosquittoHash(SERVER_PASSWORD)}\n`, { mode: 0o600 });
  writeFileSync(aclFile, renderMosquittoAcl(SERVER_USER), { mode: 0o600 });
  const conf = writeMosquittoConf(dir, port, [`password_file ${passwordFile}`, `acl_file ${aclFile}`]);
  const mosq: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  const url = `mqtt://127.0.0.1:${port}`;
  let server: RunningServer | undefined;
  try {
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
      ...opts,
      broker: {
        kind: 'external',
        connect: { url, username: SERVER_USER, password: SERVER_PASSWORD },
        mosquitto: {
          passwordFile,
          aclFile,
          serverUser: SERVER_USER,
          serverPassword: SERVER_PASSWORD,
          reload: () => mosq.kill('SIGHUP'),
        },
      },
    });
  } catch (err) {
    mosq.kill('SIGTERM');
    throw err;
  }
  const s = server;
  const provision = (id: string) => provisionDevice(s, id);
  return {
    server: s,
    url,
    clientOptions: {},
    deniedPublish: 'drop',
    passwordFile,
    provision,
    async addDevice(id: string): Promise<BrokerDevice> {
      const { mqtt } = await provision(id);
      // Mosquitto re-reads its password file on SIGHUP asynchronously: wait until the device gets in.
      const c = await connectWithin(url, { clientId: `${id}-probe`, ...mqtt }, 5000);
      await c.endAsync();
      return {
        id,
        credentials: () => ({ ...mqtt }),
        wrongCredentials: () => ({ username: id, password: `${mqtt.password}x` }),
      };
    },
    async close() {
      await s.close();
      mosq.kill('SIGTERM');
    },
  };
}

export interface ProvisionResult {
  /** The registration answer before an operator accepted the device. */
  pending: { mqtt?: unknown; device: { status: string } };
  mqtt: { username: string; password: string };
}

/** Registers with proof of key (pending), is accepted by an operator, registers again and gets its MQTT credential. */
async function provisionDevice(server: RunningServer, id: string): Promise<ProvisionResult> {
  const d = testDevice(id);
  const body = { deviceId: id, publicKey: d.publicKeyHex, hardware: 'TEST-ONLY-board' };
  const first = await server.app.inject({
    method: 'POST',
    url: '/api/v1/devices/register',
    payload: { ...body, proof: d.password() },
  });
  expect(first.statusCode, first.body).toBe(200);
  const accepted = await server.app.inject({
    method: 'POST',
    url: `/api/v1/devices/${id}/accept`,
    headers: auth(),
  });
  expect(accepted.statusCode, accepted.body).toBe(200);
  const again = await server.app.inject({
    method: 'POST',
    url: '/api/v1/devices/register',
    payload: { ...body, proof: d.password() },
  });
  expect(again.statusCode, again.body).toBe(200);
  return { pending: first.json(), mqtt: again.json().mqtt };
}

/** Connects, retrying for at most `ms` (a broker reload is asynchronous). */
export async function connectWithin(url: string, o: IClientOptions, ms: number): Promise<MqttClient> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await connect(url, o);
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
