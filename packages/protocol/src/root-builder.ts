import type { KeyPair } from './crypto.js';
import { toHex } from './crypto.js';
import type { Role, RootMetadata } from './schemas.js';
import { SCHEMA_VERSION } from './schemas.js';

export interface RoleKeySet {
  keys: KeyPair[];
  threshold: number;
}

/** Builds (unsigned) keys metadata naming the keys and threshold of each role. */
export function buildRoot(opts: {
  version: number;
  expires: string;
  roles: Record<Role, RoleKeySet>;
}): RootMetadata {
  const keys: RootMetadata['keys'] = {};
  const roles = {} as RootMetadata['roles'];
  for (const [role, set] of Object.entries(opts.roles) as [Role, RoleKeySet][]) {
    for (const k of set.keys) keys[k.keyId] = { keytype: 'ed25519', public: toHex(k.publicKey) };
    roles[role] = { keyids: set.keys.map((k) => k.keyId), threshold: set.threshold };
  }
  return {
    _type: 'root',
    schemaVersion: SCHEMA_VERSION,
    version: opts.version,
    expires: opts.expires,
    keys,
    roles,
  };
}

/** ISO time `days` after `now`, at second precision (what manifests carry). */
export function isoAfter(now: Date, days: number): string {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + days * 86_400_000)
    .toISOString()
    .replace('.000Z', 'Z');
}
