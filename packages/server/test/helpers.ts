import { createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalBytes, DEVICE_AUTH_PREFIX, type DeviceStateMessage } from '@flotilla/protocol';
import type { Aedes } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { type ListenOptions, type RunningServer, startServer } from '../src/index.js';

export const TEST_ADMIN = 'TEST-ONLY-admin-token';
export const silent = pino({ level: process.env.FLOTILLA_TEST_LOG ?? 'silent' });

const dirs: string[] = [];
export function tempDir(prefix = 'flotilla-server-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
export function cleanupDirs(): void {
  for (const d of dirs.splice(0)) {
    rmSync(d, { recursive: true, force: true });
    // A server's first start on a data dir writes its root keys beside it (<dataDir>.offline-keys).
    rmSync(`${d}.offline-keys`, { recursive: true, force: true });
  }
}

export async function startTestServer(opts: Partial<ListenOptions> = {}): Promise<RunningServer> {
  return startServer({
    dataDir: opts.dataDir ?? tempDir(),
    port: 0,
    mqttPort: 0,
    logger: silent,
    adminToken: TEST_ADMIN,
    devKeys: true,
    ...opts,
    // Timed retention stays off in tests unless a test sets it.
    limits: { retentionIntervalMs: 0, ...opts.limits },
  });
}

/**
 * A TEST-ONLY device key through node:crypto (tweetnacl makes ~100 keys/s here, too slow for
 * thousands of simulated devices). Passwords have exactly protocol's format and are verified by
 * the server with protocol's verifyDevicePassword, so the helper cannot drift unnoticed.
 */
export interface TestDevice {
  id: string;
  publicKeyHex: string;
  password(now?: number, nonce?: string): string;
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export function testDevice(id: string): TestDevice {
  // Key from a random seed, public key from its DER form. Not generateKeyPairSync + JWK export:
  // on Node 20 that pair deadlocks in GC (a KeyGenJob destructor waits on the mutex ExportJWK
  // holds) when thousands of keys are made in a row — seen as a hung ingest-load test.
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKeyHex = spki.subarray(spki.length - 32).toString('hex');
  return {
    id,
    publicKeyHex,
    password(now = Date.now(), nonce = randomBytes(16).toString('hex')) {
      const msg = canonicalBytes({ purpose: 'flotilla-mqtt-auth', deviceId: id, ts: now, nonce });
      return `${DEVICE_AUTH_PREFIX}.${now}.${nonce}.${sign(null, msg, privateKey).toString('hex')}`;
    },
  };
}

/** Registers a device as accepted straight in the store (fleet set-up for tests). */
export async function enroll(
  server: RunningServer,
  d: TestDevice,
  extra: { hardware?: string } = {},
): Promise<void> {
  await server.ctx.store.devices.insert({
    id: d.id,
    publicKey: d.publicKeyHex,
    status: 'accepted',
    hardware: extra.hardware ?? 'TEST-ONLY-board',
    now: Date.now(),
  });
}

export function connect(url: string, o: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(url, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...o,
  });
}

/** Ends these clients at once (no DISCONNECT wait, errors ignored) and empties the list: test teardown. */
export async function endClients(clients: (MqttClient | undefined)[]): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c?.endAsync(true).catch(() => {})));
}

/** Connects as the device; rejects with the CONNACK error when refused. */
export function connectDevice(url: string, d: TestDevice, o: IClientOptions = {}): Promise<MqttClient> {
  return connect(url, { clientId: d.id, username: d.id, password: d.password(), clean: false, ...o });
}

/** A valid state report; a test sending a bad one overrides fields of it with a spread. */
export function stateMessage(seq: number, extra: Partial<DeviceStateMessage> = {}): DeviceStateMessage {
  return {
    schemaVersion: 1,
    type: 'state',
    seq,
    ts: new Date().toISOString(),
    version: '1.0.0',
    imageSha256: null,
    securityVersion: 1,
    activeSlot: 'A',
    agentState: 'Idle',
    deploymentId: null,
    lastError: null,
    ...extra,
  };
}

export function eventMessage(
  eventId: string,
  seq: number,
  kind: string,
  extra: Record<string, unknown> = {},
) {
  return {
    schemaVersion: 1,
    type: 'event',
    eventId,
    seq,
    ts: new Date().toISOString(),
    kind,
    deploymentId: null,
    ...extra,
  };
}

export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export const auth = (token = TEST_ADMIN) => ({ authorization: `Bearer ${token}` });

/**
 * The retained messages an aedes broker holds. Its persistence is an instance field the aedes
 * typings leave out; this is the one place a test reaches for it.
 */
export function retainedStream(aedes: Aedes, patterns: string[]): AsyncIterable<unknown> {
  const internals = aedes as unknown as {
    persistence: { createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown> };
  };
  return internals.persistence.createRetainedStreamCombi(patterns);
}
