import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { auth, cleanupDirs, connectDevice, startTestServer, TEST_ADMIN, testDevice } from './helpers.js';

// Factory pre-registration: an admin posts public keys; the devices then log in with their own
// signed passwords (the real check), and nothing about the batch is half-done on bad input.

let server: RunningServer;
let operator: string;
const MAX = 5;

beforeAll(async () => {
  server = await startTestServer({ limits: { maxBulkRegister: MAX } });
  operator = (
    await server.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: auth(),
      payload: { name: 'TEST-ONLY operator', role: 'operator' },
    })
  ).json().token as string;
});
afterAll(async () => {
  await server.close();
  cleanupDirs();
});

const post = (payload: unknown, token = TEST_ADMIN) =>
  server.app.inject({
    method: 'POST',
    url: '/api/v1/devices/bulk-register',
    headers: auth(token),
    payload: payload as object,
  });
const entry = (d: { id: string; publicKeyHex: string }) => ({
  deviceId: d.id,
  publicKey: d.publicKeyHex,
  hardware: 'TEST-ONLY-board',
});
const status = async (id: string) => (await server.ctx.store.devices.get(id))?.status;

describe('POST /devices/bulk-register', () => {
  it('registers accepted devices that then connect with their own signed passwords, and audits the batch', async () => {
    const devs = [0, 1, 2].map((i) => testDevice(`TEST-ONLY-bulk-${i}`));
    const res = await post({ devices: devs.map(entry) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ registered: devs.map((d) => d.id), unchanged: [] });
    const c = await connectDevice(server.addresses.mqtt!, devs[1]!);
    expect(c.connected).toBe(true);
    await c.endAsync();
    // The key is what authenticates: another key under the same id is refused.
    await expect(connectDevice(server.addresses.mqtt!, testDevice(devs[2]!.id))).rejects.toThrow();
    const audit = await server.ctx.store.audit.list(Number.MAX_SAFE_INTEGER, 10);
    const a = audit.find((e) => e.action === 'device.bulk-register');
    expect(a?.actor).toBeTruthy();
    expect(JSON.stringify(a)).toContain(devs[0]!.id);
    // The same keys again change nothing.
    expect((await post({ devices: devs.map(entry) })).json()).toEqual({
      registered: [],
      unchanged: devs.map((d) => d.id),
    });
  });

  it('keeps pending devices out of the broker until an operator accepts them', async () => {
    const d = testDevice('TEST-ONLY-bulk-pending');
    expect((await post({ devices: [entry(d)], status: 'pending' })).statusCode).toBe(200);
    expect(await status(d.id)).toBe('pending');
    await expect(connectDevice(server.addresses.mqtt!, d)).rejects.toThrow(/Not authorized/i);
  });

  it('refuses the whole batch when one id is registered with another key (409, nothing written)', async () => {
    const taken = testDevice('TEST-ONLY-bulk-taken');
    expect((await post({ devices: [entry(taken)] })).statusCode).toBe(200);
    const fresh = testDevice('TEST-ONLY-bulk-fresh');
    const res = await post({ devices: [entry(fresh), entry(testDevice(taken.id))] });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH');
    expect(await status(fresh.id)).toBeUndefined();
  });

  it('rejects duplicates, oversized batches, bad keys and unknown fields with 400 and writes nothing', async () => {
    const d = testDevice('TEST-ONLY-bulk-dup');
    const cases: unknown[] = [
      { devices: [entry(d), entry(d)] },
      { devices: Array.from({ length: MAX + 1 }, (_, i) => entry(testDevice(`TEST-ONLY-bulk-big-${i}`))) },
      { devices: [] },
      { devices: [{ ...entry(d), publicKey: 'zz' }] },
      { devices: [{ ...entry(d), proof: 'x' }] },
      { devices: [entry(d)], status: 'decommissioned' },
    ];
    for (const body of cases) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_VALIDATION');
    }
    expect(await status(d.id)).toBeUndefined();
    expect(await status('TEST-ONLY-bulk-big-0')).toBeUndefined();
  });

  it('is for admins only', async () => {
    const d = testDevice('TEST-ONLY-bulk-operator');
    const res = await post({ devices: [entry(d)] }, operator);
    expect(res.statusCode).toBe(403);
    expect(await status(d.id)).toBeUndefined();
  });
});
