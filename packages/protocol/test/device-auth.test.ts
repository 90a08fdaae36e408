import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  generateKeyPair,
  makeDevicePassword,
  preloadVerifyKeys,
  signBytes,
  toHex,
  verifyBytes,
  verifyBytesFast,
  verifyDevicePassword,
} from '../src/index.js';

const now = new Date('2026-06-01T12:00:00Z');
const key = generateKeyPair();
const pub = toHex(key.publicKey);
const nonce = 'a1b2c3d4e5f60718';

describe('device MQTT password', () => {
  it('verifies a fresh password from the device key', () => {
    const pw = makeDevicePassword('dev-1', key, now, nonce);
    expect(verifyDevicePassword(pw, 'dev-1', pub, now)).toEqual({
      deviceId: 'dev-1',
      ts: now.getTime(),
      nonce,
    });
  });

  it('rejects a password signed by another key (wrong key)', () => {
    const pw = makeDevicePassword('dev-1', generateKeyPair(), now, nonce);
    expect(() => verifyDevicePassword(pw, 'dev-1', pub, now)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_DEVICE_AUTH' }),
    );
  });

  it('rejects a password made for another device id', () => {
    const pw = makeDevicePassword('dev-2', key, now, nonce);
    expect(() => verifyDevicePassword(pw, 'dev-1', pub, now)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_DEVICE_AUTH' }),
    );
  });

  it('rejects a password outside the time window (stale capture)', () => {
    const pw = makeDevicePassword('dev-1', key, new Date(now.getTime() - 10 * 60_000), nonce);
    expect(() => verifyDevicePassword(pw, 'dev-1', pub, now)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_DEVICE_AUTH' }),
    );
  });

  it.each([
    '',
    'fl1',
    'fl1.x.y.z',
    `fl2.${now.getTime()}.${nonce}.${'0'.repeat(128)}`,
    `fl1.${now.getTime()}.zz.${'0'.repeat(128)}`,
  ])('rejects the malformed password %j', (pw) => {
    expect(() => verifyDevicePassword(pw, 'dev-1', pub, now)).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_DEVICE_AUTH' }),
    );
  });
});

describe('ed25519 implementations agree', () => {
  it('tweetnacl and node:crypto accept and reject the same signatures', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.nat(63), fc.boolean(), (msg, pos, corrupt) => {
        const sig = signBytes(msg, key.secretKey);
        if (corrupt) sig[pos] = sig[pos]! ^ 0x01;
        expect(verifyBytesFast(msg, sig, key.publicKey)).toBe(verifyBytes(msg, sig, key.publicKey));
        expect(verifyBytes(msg, sig, key.publicKey)).toBe(!corrupt);
      }),
      { numRuns: 100 },
    );
  });

  it('the OpenSSL verifier refuses bad keys and lengths, cached or not', () => {
    const msg = new Uint8Array([1, 2, 3]);
    const sig = signBytes(msg, key.secretKey);
    expect(verifyBytesFast(msg, sig.subarray(0, 63), key.publicKey)).toBe(false);
    expect(verifyBytesFast(msg, sig, key.publicKey.subarray(0, 31))).toBe(false);
    expect(verifyBytesFast(msg, sig, new Uint8Array(32).fill(0xff))).toBe(false);
    expect(preloadVerifyKeys([pub, 'not-hex', 'ABCD'])).toBe(1); // malformed hex is skipped
    expect(verifyBytesFast(msg, sig, key.publicKey)).toBe(true); // from the cache
    expect(verifyBytesFast(msg, sig, generateKeyPair().publicKey)).toBe(false);
  });
});
