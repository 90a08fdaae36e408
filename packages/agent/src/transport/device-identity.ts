import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  fromHex,
  generateKeyPair,
  type KeyPair,
  keyPairFromSecretKey,
  parseJson,
  toHex,
} from '@flotilla/protocol';
import type { AgentConfigFile } from '../config.js';
import { AgentError } from '../errors.js';
import { atomicWriteFile, readBounded } from '../fs-util.js';
import type { MqttAuth } from './mqtt-transport.js';

/** `{ "kind": "flotilla-device-key", "deviceId": "...", "private": "<128 hex>" }`, mode 0600. */
export async function readDeviceKey(path: string): Promise<KeyPair | null> {
  let bytes: Buffer | null;
  try {
    bytes = await readBounded(path, 16 * 1024);
  } catch (cause) {
    throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `cannot read ${path}`, { cause });
  }
  if (bytes === null) return null;
  let f: { kind?: unknown; private?: unknown };
  try {
    f = parseJson(bytes, { maxBytes: 16 * 1024 }) as typeof f;
  } catch (cause) {
    throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `${path} is not a Flotilla device key file`, { cause });
  }
  if (f.kind !== 'flotilla-device-key' || typeof f.private !== 'string' || !/^[0-9a-f]{128}$/.test(f.private))
    throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `${path} is not a Flotilla device key file`);
  return keyPairFromSecretKey(fromHex(f.private));
}

/** The device's own key: read it, or make it on first start (a device never ships a shared key). */
export async function loadOrCreateDeviceKey(path: string, deviceId: string): Promise<KeyPair> {
  const existing = await readDeviceKey(path);
  if (existing) return existing;
  const key = generateKeyPair();
  await mkdir(dirname(path), { recursive: true }); // first start: the data dir may not exist yet
  const file = { kind: 'flotilla-device-key', deviceId, private: toHex(key.secretKey) };
  await atomicWriteFile(path, `${JSON.stringify(file)}\n`, 0o600);
  return key;
}

/** A one-line secret named in the config (token, issued password): trimmed, never empty. */
async function readSecretFile(path: string): Promise<string> {
  const text = (
    await readBounded(path, 4096).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `cannot read ${path}`, { cause });
    })
  )
    ?.toString('utf8')
    .trim();
  if (!text) throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `${path} is missing or empty`);
  return text;
}

/**
 * MQTT credentials from the config file. With a provisioning token and no record of a successful
 * provisioning login yet, the device presents the token with its own public key (making the key
 * on first start if there is none); once the server accepted that login, `<dataDir>/provisioned.json`
 * is written and every later start signs with the key alone.
 */
export async function mqttAuthFromConfig(file: AgentConfigFile): Promise<MqttAuth> {
  const server = file.server;
  if (!server) throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', 'no server section');
  if (server.mqttPasswordFile) {
    if (server.provisioningTokenFile)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_CONFIG',
        'server.mqttPasswordFile and server.provisioningTokenFile exclude each other: an external broker takes only the issued password',
      );
    return { kind: 'password', password: await readSecretFile(server.mqttPasswordFile) };
  }
  const keyPath = server.deviceKeyFile ?? join(file.dataDir, 'device-key.json');
  const marker = join(file.dataDir, 'provisioned.json');
  const provisioned = (await readBounded(marker, 64 * 1024).catch(() => null)) !== null;
  if (server.provisioningTokenFile && !provisioned) {
    const token = await readSecretFile(server.provisioningTokenFile);
    const key = await loadOrCreateDeviceKey(keyPath, file.deviceId);
    return {
      kind: 'provisioning-token',
      token,
      key,
      onProvisioned: () =>
        atomicWriteFile(
          marker,
          JSON.stringify({
            deviceId: file.deviceId,
            publicKey: toHex(key.publicKey),
            at: new Date().toISOString(),
          }),
        ),
    };
  }
  const key = await readDeviceKey(keyPath);
  if (!key)
    throw new AgentError(
      'FLOTILLA_ERR_AGENT_DEVICE_KEY_NOT_FOUND',
      `${keyPath}${server.deviceKeyFile ? ' (server.deviceKeyFile)' : ' (the default of server.deviceKeyFile)'}`,
    );
  return { kind: 'device-key', key };
}
