import { generateKeyPair, type KeyPair, toHex } from './crypto.js';
import { type Role, type RootMetadata, SCHEMA_VERSION, type SignedEnvelope } from './schemas.js';
import { signDocument } from './signing.js';

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

export interface TrustSet {
  keys: Record<Role, KeyPair[]>;
  root: SignedEnvelope<RootMetadata>;
}

/**
 * Fresh keys for every role and keys metadata signed by all root keys: what `flotilla keys init`
 * writes and what tests and the demo use (with TEST-ONLY labels).
 */
export function generateTrustSet(opts: {
  now: Date;
  rootKeys?: number;
  rootThreshold?: number;
  expiresDays?: number;
}): TrustSet {
  const rootCount = opts.rootKeys ?? 3;
  const threshold = opts.rootThreshold ?? Math.min(2, rootCount);
  const keys: Record<Role, KeyPair[]> = {
    root: Array.from({ length: rootCount }, () => generateKeyPair()),
    release: [generateKeyPair()],
    delta: [generateKeyPair()],
    recovery: [generateKeyPair()],
  };
  const meta = buildRoot({
    version: 1,
    expires: isoAfter(opts.now, opts.expiresDays ?? 365),
    roles: {
      root: { keys: keys.root, threshold },
      release: { keys: keys.release, threshold: 1 },
      delta: { keys: keys.delta, threshold: 1 },
      recovery: { keys: keys.recovery, threshold: 1 },
    },
  });
  return { keys, root: signDocument(meta, keys.root) };
}
