import type { Worker } from 'node:worker_threads';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type PasswordCheck, PasswordVerifier } from '../src/mqtt/password-verifier.js';
import { testDevice } from './helpers.js';

const log = pino({ level: 'silent' });
const WINDOW = 5 * 60_000;
const dev = testDevice('TEST-ONLY-verifier-1');
const other = testDevice('TEST-ONLY-verifier-2');
const check = (password: string, d = dev, now = Date.now()): PasswordCheck => ({
  password,
  deviceId: d.id,
  publicKey: d.publicKeyHex,
  now,
  windowMs: WINDOW,
});

let verifier: PasswordVerifier | null = null;
afterEach(async () => {
  await verifier?.close();
});

describe('device passwords checked in a worker thread', () => {
  it('accepts a good password and names what is wrong with bad ones, in one batch', async () => {
    verifier = new PasswordVerifier(log);
    const now = Date.now();
    const [good, wrongKey, stale, garbage] = await Promise.all([
      verifier.check(check(dev.password(now, 'a1b2c3d4e5f60718'))),
      verifier.check(check(other.password(now), dev)),
      verifier.check(check(dev.password(now - 2 * WINDOW))),
      verifier.check(check('fl1.not-a-password')),
    ]);
    expect(good).toEqual({ ok: true, nonce: 'a1b2c3d4e5f60718', ts: now });
    expect(wrongKey).toEqual({ ok: false, detail: 'device authentication failed: bad signature' });
    expect(stale).toMatchObject({ ok: false, detail: expect.stringContaining('time window') });
    expect(garbage).toEqual({ ok: false, detail: 'device authentication failed: malformed password' });
  });

  it('answers checks in flight when the worker dies, and checks on the event loop after', async () => {
    verifier = new PasswordVerifier(log);
    await verifier.preload([dev.publicKeyHex]); // resolves once the worker parsed them
    const inFlight = [verifier.check(check(dev.password())), verifier.check(check(other.password(), dev))];
    // Let the batch go out, then kill the worker under it.
    await new Promise((r) => setImmediate(r));
    await (verifier as unknown as { worker: Worker }).worker.terminate();
    expect(await Promise.all(inFlight)).toEqual([
      { ok: true, nonce: expect.any(String), ts: expect.any(Number) },
      { ok: false, detail: 'device authentication failed: bad signature' },
    ]);
    expect(await verifier.check(check(dev.password()))).toMatchObject({ ok: true });
    expect(await verifier.check(check(other.password(), dev))).toMatchObject({ ok: false });
  });

  it('sends at most two batches at a time; what waits behind them is answered when the worker dies', async () => {
    verifier = new PasswordVerifier(log);
    const v = verifier as unknown as { worker: Worker; inFlight: Map<number, unknown[]>; queued: unknown[] };
    const turns: Promise<unknown>[][] = [];
    for (let t = 0; t < 4; t++) {
      turns.push([verifier.check(check(dev.password())), verifier.check(check(other.password(), dev))]);
      await new Promise((r) => setImmediate(r)); // one event-loop turn of logins
    }
    // Two batches out, the rest gathered into the next one (not one message per turn).
    expect(v.inFlight.size).toBeLessThanOrEqual(2);
    expect(v.inFlight.size + (v.queued.length > 0 ? 1 : 0)).toBeLessThan(4);
    await v.worker.terminate();
    for (const turn of turns)
      expect(await Promise.all(turn)).toEqual([
        { ok: true, nonce: expect.any(String), ts: expect.any(Number) },
        { ok: false, detail: 'device authentication failed: bad signature' },
      ]);
  });

  it('without a worker, checks the same way on the calling thread', async () => {
    verifier = new PasswordVerifier(log, false);
    expect(await verifier.check(check(dev.password()))).toMatchObject({ ok: true });
    expect(await verifier.check(check(other.password(), dev))).toEqual({
      ok: false,
      detail: 'device authentication failed: bad signature',
    });
  });
});
