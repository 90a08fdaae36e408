import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProvisioningPassword, verifyDevicePassword } from '@flotilla/protocol';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentConfigFile } from '../src/config.js';
import { AGENT_LIMITS, MqttTransport, systemClock } from '../src/index.js';
import { mqttAuthFromConfig } from '../src/transport/device-identity.js';
import { closeBroker, dropBrokerClients } from './helpers.js';

/**
 * A real aedes broker on loopback whose authenticate hook follows the server's rules
 * (packages/server/src/mqtt/device-auth.ts) with protocol's own parsers: a provisioning login
 * `flp1.<token>.<publicKeyHex>` registers the key and burns the token (accepted or pending by the
 * token's policy); a key login must verify against the registered key, once per nonce.
 */
interface Attempt {
  scheme: 'provisioning' | 'key' | 'other';
  ok: boolean;
  publicKeyHex?: string;
}

async function startRegistryBroker(tokens: Record<string, { autoAccept: boolean }>, port = 0) {
  const broker = await Aedes.createBroker();
  const devices = new Map<string, { publicKey: string; status: 'accepted' | 'pending' }>();
  const used = new Set<string>();
  const nonces = new Set<string>();
  const attempts: Attempt[] = [];
  broker.authenticate = (_client, username, password, done) => {
    const pw = password?.toString() ?? '';
    const id = username ?? '';
    const refuse = (a: Attempt) => {
      attempts.push(a);
      done(Object.assign(new Error('refused'), { returnCode: 5 }) as never, false);
    };
    const prov = parseProvisioningPassword(pw);
    if (prov) {
      const t = tokens[prov.token];
      if (!t || used.has(prov.token)) return refuse({ scheme: 'provisioning', ok: false });
      used.add(prov.token);
      devices.set(id, { publicKey: prov.publicKeyHex, status: t.autoAccept ? 'accepted' : 'pending' });
      if (!t.autoAccept)
        return refuse({ scheme: 'provisioning', ok: false, publicKeyHex: prov.publicKeyHex });
      attempts.push({ scheme: 'provisioning', ok: true, publicKeyHex: prov.publicKeyHex });
      return done(null, true);
    }
    const dev = devices.get(id);
    if (!pw.startsWith('fl1.') || !dev)
      return refuse({ scheme: pw.startsWith('fl1.') ? 'key' : 'other', ok: false });
    try {
      const claims = verifyDevicePassword(pw, id, dev.publicKey, new Date());
      if (nonces.has(claims.nonce) || dev.status !== 'accepted') throw new Error('refused');
      nonces.add(claims.nonce);
    } catch {
      return refuse({ scheme: 'key', ok: false });
    }
    attempts.push({ scheme: 'key', ok: true, publicKeyHex: dev.publicKey });
    done(null, true);
  };
  const server = net.createServer(broker.handle);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    attempts,
    devices,
    /** Drops every client (the devices reconnect with fresh passwords). */
    kick: () => dropBrokerClients(broker),
    close: () => closeBroker(broker, server),
  };
}

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const limits = { ...AGENT_LIMITS.mqtt, backoffBaseMs: 20, backoffMaxMs: 60, connectTimeoutMs: 2000 };
const TOKEN = 'flp_TEST-ONLY_0123456789abcdef';

let broker: Awaited<ReturnType<typeof startRegistryBroker>> | undefined;
let transport: MqttTransport | undefined;
let dir: string | undefined;
afterEach(async () => {
  await transport?.stop();
  await broker?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  broker = transport = dir = undefined;
});

async function configWithToken(): Promise<AgentConfigFile> {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-prov-'));
  await writeFile(join(dir, 'token'), `${TOKEN}\n`);
  return {
    deviceId: 'dev-7',
    hardware: 'sim-board-v1',
    dataDir: join(dir, 'data'), // not there yet: the first start makes it
    trustDir: join(dir, 'trust'),
    server: { mqttUrl: `mqtt://127.0.0.1:${broker!.port}`, provisioningTokenFile: join(dir, 'token') },
    slots: { A: { path: join(dir, 'a') }, B: { path: join(dir, 'b') } },
    bootloader: { kind: 'file', path: join(dir, 'boot.json') },
    reboot: { command: ['true'] },
  };
}

function connect(file: AgentConfigFile, auth: Awaited<ReturnType<typeof mqttAuthFromConfig>>): MqttTransport {
  const t = new MqttTransport({
    url: file.server!.mqttUrl,
    deviceId: file.deviceId,
    auth,
    clock: systemClock,
    limits,
  });
  t.start({ onCommand: () => undefined, onConnect: () => undefined, onDisconnect: () => undefined });
  return t;
}

describe('provisioning login (first contact with a one-time token)', () => {
  it('presents the token with the device public key (not the raw token), then signs every later login with that key', async () => {
    broker = await startRegistryBroker({ [TOKEN]: { autoAccept: true } });
    const file = await configWithToken();
    const auth = await mqttAuthFromConfig(file);
    if (auth.kind !== 'provisioning-token')
      throw new Error(`expected a provisioning login, got ${auth.kind}`);
    // The device made its own key on first start, private and kept for later starts.
    const keyFile = join(dir!, 'data', 'device-key.json');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    transport = connect(file, auth);
    await until(() => transport!.connects > 0, 'first login');
    const publicKeyHex = Buffer.from(auth.key.publicKey).toString('hex');
    expect(broker.attempts).toEqual([{ scheme: 'provisioning', ok: true, publicKeyHex }]);
    expect(broker.devices.get('dev-7')).toEqual({ publicKey: publicKeyHex, status: 'accepted' });
    await until(() => transport!.provisioned, 'provisioned');

    // A reconnect in the same life signs with the registered key (the token is burned).
    broker.kick();
    await until(() => transport!.connects > 1, 'reconnect');
    expect(broker.attempts.slice(1)).toEqual([{ scheme: 'key', ok: true, publicKeyHex }]);
    await transport.stop();

    // The next start reads the record of the provisioning and the same key: key login only.
    const marker = JSON.parse(await readFile(join(dir!, 'data', 'provisioned.json'), 'utf8'));
    expect(marker).toMatchObject({ deviceId: 'dev-7', publicKey: publicKeyHex });
    const again = await mqttAuthFromConfig(file);
    if (again.kind !== 'device-key') throw new Error(`expected a key login, got ${again.kind}`);
    expect(Buffer.from(again.key.publicKey).toString('hex')).toBe(publicKeyHex);
    transport = connect(file, again);
    await until(() => transport!.connects > 0, 'login after restart');
    expect(broker.attempts.slice(2)).toEqual([{ scheme: 'key', ok: true, publicKeyHex }]);
  });

  it('a device kept pending after its token was burned gets in with its own key once accepted', async () => {
    broker = await startRegistryBroker({ [TOKEN]: { autoAccept: false } });
    const file = await configWithToken();
    const auth = await mqttAuthFromConfig(file);
    transport = connect(file, auth);
    await until(
      () => broker!.attempts.filter((a) => a.scheme === 'key').length >= 2,
      'key logins while pending',
    );
    expect(transport.connects).toBe(0);
    expect(broker.attempts[0]).toMatchObject({ scheme: 'provisioning', ok: false });
    // Never the raw token, never anything but the two schemes.
    expect(broker.attempts.every((a) => a.scheme !== 'other')).toBe(true);
    broker.devices.get('dev-7')!.status = 'accepted'; // the operator accepts the device
    await until(() => transport!.connects > 0, 'login after acceptance');
    expect(broker.attempts.at(-1)).toMatchObject({ scheme: 'key', ok: true });
    await until(() => transport!.provisioned, 'provisioned');
    expect((await mqttAuthFromConfig(file)).kind).toBe('device-key');
  });

  it('refuses a config with neither a device key nor a provisioning token (FLOTILLA_ERR_AGENT_DEVICE_KEY_NOT_FOUND)', async () => {
    broker = await startRegistryBroker({});
    const file = await configWithToken();
    delete file.server!.provisioningTokenFile;
    await expect(mqttAuthFromConfig(file)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_DEVICE_KEY_NOT_FOUND',
    });
  });

  it('logs in with the password the server issued (server.mqttPasswordFile) instead of signing', async () => {
    broker = await startRegistryBroker({});
    const file = await configWithToken();
    delete file.server!.provisioningTokenFile;
    await writeFile(join(dir!, 'mqtt-password'), 'TEST-ONLY-issued-password\n', { mode: 0o600 });
    file.server!.mqttPasswordFile = join(dir!, 'mqtt-password');
    expect(await mqttAuthFromConfig(file)).toEqual({
      kind: 'password',
      password: 'TEST-ONLY-issued-password',
    });
  });

  it('refuses an empty server.mqttPasswordFile, or one beside a provisioning token (FLOTILLA_ERR_AGENT_CONFIG)', async () => {
    broker = await startRegistryBroker({});
    const file = await configWithToken();
    await writeFile(join(dir!, 'mqtt-password'), '\n');
    file.server!.mqttPasswordFile = join(dir!, 'mqtt-password');
    await expect(mqttAuthFromConfig(file)).rejects.toMatchObject({ code: 'FLOTILLA_ERR_AGENT_CONFIG' });
    delete file.server!.provisioningTokenFile;
    await expect(mqttAuthFromConfig(file)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_CONFIG',
      message: expect.stringContaining('empty'),
    });
  });
});
