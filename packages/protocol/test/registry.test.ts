import { describe, expect, it } from 'vitest';
import {
  decodeDeviceMessage,
  decodeKeyFile,
  ERRORS,
  encodeKeyFile,
  errorClass,
  FlotillaError,
  generateKeyPair,
  isFlotillaError,
  LIMITS,
} from '../src/index.js';

describe('error registry', () => {
  it('gives every code the FLOTILLA_ERR_ prefix, a message, a hint and an HTTP status', () => {
    for (const [code, entry] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^FLOTILLA_ERR_[A-Z0-9_]+$/);
      expect(entry.message.length).toBeGreaterThan(3);
      expect(entry.hint.length).toBeGreaterThan(3);
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.status).toBeLessThan(600);
    }
  });

  it('keeps the cause and names the component', () => {
    const cause = new Error('disk full');
    const err = new FlotillaError('FLOTILLA_ERR_INTERNAL', 'writing state', { component: 'agent', cause });
    expect(err.cause).toBe(cause);
    expect(err.toJSON()).toMatchObject({ code: 'FLOTILLA_ERR_INTERNAL', component: 'agent' });
    expect(isFlotillaError(err, 'FLOTILLA_ERR_INTERNAL')).toBe(true);
    expect(isFlotillaError(new Error('x'))).toBe(false);
  });
});

describe('package error classes', () => {
  it('builds a package error class from its registry with code, status, hint, component and cause', () => {
    const REG = { FLOTILLA_ERR_PKG_BROKEN: { status: 409, message: 'it broke', hint: 'fix it' } } as const;
    class PkgError extends errorClass(REG, 'pkg', 'PkgError') {}
    const cause = new Error('root cause');
    const e = new PkgError('FLOTILLA_ERR_PKG_BROKEN', 'detail', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({
      name: 'PkgError',
      code: 'FLOTILLA_ERR_PKG_BROKEN',
      status: 409,
      hint: 'fix it',
      component: 'pkg',
      message: 'it broke: detail',
    });
    expect(e.cause).toBe(cause);
    expect(isFlotillaError(e, 'FLOTILLA_ERR_PKG_BROKEN')).toBe(true);
  });
});

describe('MQTT message schemas', () => {
  const ts = '2026-06-01T12:00:00Z';
  const event = {
    schemaVersion: 1,
    type: 'event',
    eventId: 'e-1',
    seq: 1,
    ts,
    kind: 'healthy',
    deploymentId: 'd1',
    version: '1.1.0',
  };

  it('accepts a valid event', () => {
    expect(decodeDeviceMessage('events', JSON.stringify(event)).kind).toBe('healthy');
  });

  it('rejects malformed JSON, the wrong schema, an unknown schemaVersion and oversized payloads', () => {
    const code = (c: string) => expect.objectContaining({ code: c });
    expect(() => decodeDeviceMessage('events', '{"schemaVersion":1,')).toThrow(
      code('FLOTILLA_ERR_JSON_MALFORMED'),
    );
    expect(() => decodeDeviceMessage('events', JSON.stringify({ ...event, kind: 'pwned' }))).toThrow(
      code('FLOTILLA_ERR_SCHEMA'),
    );
    expect(() => decodeDeviceMessage('events', JSON.stringify({ ...event, extra: 1 }))).toThrow(
      code('FLOTILLA_ERR_SCHEMA'),
    );
    expect(() => decodeDeviceMessage('events', JSON.stringify({ ...event, schemaVersion: 2 }))).toThrow(
      code('FLOTILLA_ERR_SCHEMA_VERSION'),
    );
    const big = JSON.stringify({ ...event, detail: { log: 'x'.repeat(LIMITS.maxMqttPayloadBytes) } });
    expect(() => decodeDeviceMessage('events', big)).toThrow(code('FLOTILLA_ERR_JSON_TOO_LARGE'));
  });
});

describe('key files', () => {
  it('round-trips a key and derives the key id from the key itself', () => {
    const key = generateKeyPair();
    const decoded = decodeKeyFile(encodeKeyFile(key, 'release', 'TEST-ONLY release'));
    expect(decoded.key.keyId).toBe(key.keyId);
    expect(decoded.role).toBe('release');
  });

  it('rejects a key file whose public key does not match its private key', () => {
    const text = encodeKeyFile(generateKeyPair(), 'release', 'x').replace(
      /"public": "[0-9a-f]+"/,
      `"public": "${'0'.repeat(64)}"`,
    );
    expect(() => decodeKeyFile(text)).toThrow(expect.objectContaining({ code: 'FLOTILLA_ERR_SCHEMA' }));
  });
});
