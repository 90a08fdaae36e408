import { afterEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import {
  auth,
  cleanupDirs,
  connectDevice,
  endClients,
  startTestServer,
  type TestDevice,
  testDevice,
} from './helpers.js';

// Anyone may sign a registration for any device id (the key is their own): such a claim proves
// nothing about the id. These tests are the attacks of issue 13, item 3.

let server: RunningServer | null = null;
const clients: Parameters<typeof endClients>[0] = [];
afterEach(async () => {
  await endClients(clients);
  await server?.close();
  server = null;
  cleanupDirs();
});

const register = (d: TestDevice, extra: Record<string, unknown> = {}, remoteAddress = '127.0.0.1') =>
  server!.app.inject({
    method: 'POST',
    url: '/api/v1/devices/register',
    remoteAddress,
    payload: { deviceId: d.id, publicKey: d.publicKeyHex, proof: d.password(), ...extra },
  });

async function token(autoAccept = true): Promise<string> {
  const res = await server!.app.inject({
    method: 'POST',
    url: '/api/v1/provisioning-tokens',
    headers: auth(),
    payload: { label: 'TEST-ONLY factory line', ttlSeconds: 600, autoAccept },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().token as string;
}

describe('device squatting', () => {
  it('a valid provisioning token wins over a squatter pending claim on a future serial number', async () => {
    server = await startTestServer();
    const squatter = testDevice('TEST-ONLY-SN-000042');
    const real = testDevice('TEST-ONLY-SN-000042');
    expect((await register(squatter, { hardware: 'TEST-ONLY-fake' })).json().device.status).toBe('pending');

    const res = await register(real, { provisioningToken: await token() });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().device.status).toBe('accepted');
    const stored = (await server.ctx.store.devices.get(real.id))!;
    expect(stored.publicKey).toBe(real.publicKeyHex);
    expect(stored.hardware).toBeNull();
    const audit = await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 20);
    expect(
      audit.find((e) => e.action === 'device.register' && e.detail.via === 'token')?.detail,
    ).toMatchObject({
      replacedPendingKey: squatter.publicKeyHex,
    });
    // The squatter's key logs in nowhere; the real device's does.
    await expect(connectDevice(server.addresses.mqtt!, squatter)).rejects.toThrow();
    clients.push(await connectDevice(server.addresses.mqtt!, real));
  });

  it('without a token the first claim keeps the id, and a token never takes over an accepted device', async () => {
    server = await startTestServer();
    const first = testDevice('TEST-ONLY-SN-7');
    expect((await register(first)).statusCode).toBe(200);
    const res = await register(testDevice(first.id));
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH');

    await server.app.inject({
      method: 'POST',
      url: `/api/v1/devices/${first.id}/accept`,
      headers: auth(),
      payload: {},
    });
    const t = await token();
    const hijack = await register(testDevice(first.id), { provisioningToken: t });
    expect(hijack.statusCode).toBe(409);
    expect(hijack.json().error.code).toBe('FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH');
    // Refused before the token was spent: the device it was meant for can still use it.
    expect((await register(testDevice('TEST-ONLY-SN-8'), { provisioningToken: t })).statusCode).toBe(200);
  });

  it('bounds the pending registrations (1,000 junk pending devices in 41 s)', async () => {
    server = await startTestServer({ limits: { maxPendingDevices: 3 } });
    for (let i = 0; i < 3; i++)
      expect((await register(testDevice(`TEST-ONLY-junk-${i}`), {}, `192.0.2.${i}`)).statusCode).toBe(200);
    const full = await register(testDevice('TEST-ONLY-junk-3'), {}, '192.0.2.9');
    expect(full.statusCode).toBe(503);
    expect(full.json().error.code).toBe('FLOTILLA_ERR_SERVER_PENDING_FULL');
    expect(await server.ctx.store.devices.countByStatus('pending')).toBe(3);
    // A device with a token still joins (even one its token leaves pending).
    expect(
      (await register(testDevice('TEST-ONLY-real-1'), { provisioningToken: await token() })).statusCode,
    ).toBe(200);
    const waits = await register(testDevice('TEST-ONLY-real-2'), { provisioningToken: await token(false) });
    expect(waits.json().device.status).toBe('pending');
  });

  it('rate-limits registration attempts per source address (429), counting failures too', async () => {
    server = await startTestServer({ limits: { registerPerSourcePerMinute: 4 } });
    for (let i = 0; i < 3; i++)
      expect((await register(testDevice(`TEST-ONLY-rl-${i}`), {}, '198.51.100.7')).statusCode).toBe(200);
    const bad = await register(testDevice('TEST-ONLY-rl-x'), { proof: 'fl1.1.2.3' }, '198.51.100.7');
    expect(bad.statusCode).toBe(401);
    const limited = await register(testDevice('TEST-ONLY-rl-4'), {}, '198.51.100.7');
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error.code).toBe('FLOTILLA_ERR_SERVER_REGISTER_RATE_LIMITED');
    expect(await server.ctx.store.devices.get('TEST-ONLY-rl-4')).toBeUndefined();
    // Another address is not affected.
    expect((await register(testDevice('TEST-ONLY-rl-5'), {}, '198.51.100.8')).statusCode).toBe(200);
  });

  it('does not count registrations that end accepted (a fleet onboarding from one address)', async () => {
    server = await startTestServer({ autoAccept: true, limits: { registerPerSourcePerMinute: 2 } });
    for (let i = 0; i < 5; i++)
      expect((await register(testDevice(`TEST-ONLY-line-${i}`), {}, '203.0.113.1')).statusCode).toBe(200);
  });

  it('a captured registration proof is neither an MQTT login nor a second registration (replay)', async () => {
    server = await startTestServer({ autoAccept: true });
    const d = testDevice('TEST-ONLY-replay');
    const proof = d.password();
    const reg = await register(d, { proof });
    expect(reg.json().device.status).toBe('accepted');

    await expect(connectDevice(server.addresses.mqtt!, d, { password: proof })).rejects.toThrow();
    const again = await register(d, { proof });
    expect(again.statusCode).toBe(401);
    expect(again.json().error.message).toMatch(/already used/);
    // A fresh password logs in.
    clients.push(await connectDevice(server.addresses.mqtt!, d));
  });
});
