import { canonicalBytes } from './canonical-json.js';
import { fromHex, type KeyPair, signBytes, toHex, verifyBytesFast } from './crypto.js';
import { FlotillaError } from './errors.js';

/**
 * MQTT password for a device that authenticates with its own ed25519 key: a short signed
 * statement `{deviceId, ts, nonce}` bound to the time. The server accepts it within a window
 * around its clock and remembers nonces for the window so a captured password cannot be replayed.
 */
export const DEVICE_AUTH_PREFIX = 'fl1';
export const DEFAULT_AUTH_WINDOW_MS = 5 * 60 * 1000;

export interface DeviceAuthClaims {
  deviceId: string;
  ts: number;
  nonce: string;
}

export function makeDevicePassword(deviceId: string, key: KeyPair, now: Date, nonce: string): string {
  const claims: DeviceAuthClaims = { deviceId, ts: now.getTime(), nonce };
  const sig = toHex(signBytes(canonicalBytes({ purpose: 'flotilla-mqtt-auth', ...claims }), key.secretKey));
  return `${DEVICE_AUTH_PREFIX}.${claims.ts}.${nonce}.${sig}`;
}

/** Checks signature and time window. The caller keeps the nonce cache (replay check needs state). */
export function verifyDevicePassword(
  password: string,
  deviceId: string,
  publicKeyHex: string,
  now: Date,
  windowMs: number = DEFAULT_AUTH_WINDOW_MS,
): DeviceAuthClaims {
  const p = parseDevicePassword(password, deviceId, now, windowMs);
  if (!verifyBytesFast(p.message, p.signature, fromHex(publicKeyHex))) throw badSignature();
  return p.claims;
}

/** Shape and time window; what the signature must cover. Throws FLOTILLA_ERR_DEVICE_AUTH. */
function parseDevicePassword(
  password: string,
  deviceId: string,
  now: Date,
  windowMs: number,
): { claims: DeviceAuthClaims; message: Uint8Array; signature: Uint8Array } {
  const parts = password.split('.');
  if (parts.length !== 4 || parts[0] !== DEVICE_AUTH_PREFIX)
    throw new FlotillaError('FLOTILLA_ERR_DEVICE_AUTH', 'malformed password');
  const [, tsText, nonce, sig] = parts as [string, string, string, string];
  if (!/^\d{1,16}$/.test(tsText) || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[0-9a-f]{128}$/.test(sig)) {
    throw new FlotillaError('FLOTILLA_ERR_DEVICE_AUTH', 'malformed password');
  }
  const ts = Number(tsText);
  if (Math.abs(now.getTime() - ts) > windowMs)
    throw new FlotillaError(
      'FLOTILLA_ERR_DEVICE_AUTH',
      'password outside the time window (check the device clock)',
    );
  const message = canonicalBytes({ purpose: 'flotilla-mqtt-auth', deviceId, ts, nonce });
  return { claims: { deviceId, ts, nonce }, message, signature: fromHex(sig) };
}

function badSignature(): FlotillaError {
  return new FlotillaError('FLOTILLA_ERR_DEVICE_AUTH', 'bad signature');
}

/**
 * First contact: a device that has no registered key yet logs in with a one-time provisioning
 * token and presents its public key, `flp1.<token>.<publicKeyHex>`. The server registers the key
 * (pending or accepted by policy) and burns the token; later logins use makeDevicePassword.
 */
export const PROVISIONING_AUTH_PREFIX = 'flp1';

export function makeProvisioningPassword(token: string, publicKeyHex: string): string {
  if (!/^[A-Za-z0-9_-]{8,128}$/.test(token))
    throw new FlotillaError(
      'FLOTILLA_ERR_DEVICE_AUTH',
      'provisioning token must be 8-128 characters of [A-Za-z0-9_-]',
    );
  return `${PROVISIONING_AUTH_PREFIX}.${token}.${publicKeyHex}`;
}

export function parseProvisioningPassword(password: string): { token: string; publicKeyHex: string } | null {
  const parts = password.split('.');
  if (parts.length !== 3 || parts[0] !== PROVISIONING_AUTH_PREFIX) return null;
  const [, token, publicKeyHex] = parts as [string, string, string];
  if (!/^[A-Za-z0-9_-]{8,128}$/.test(token) || !/^[0-9a-f]{64}$/.test(publicKeyHex)) return null;
  return { token, publicKeyHex };
}
