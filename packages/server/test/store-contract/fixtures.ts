import type { DeviceStateMessage, ReleaseManifest, SignedDelta, SignedRelease } from '@flotilla/protocol';
import type { Store } from '../../src/store/store.js';
import type { Finding } from '../../src/vulns/match.js';
import type { VulnRecord } from '../../src/vulns/osv-record.js';

// Builders for the store contract's rows (not a test file itself). Values are chosen where the
// engines could read them back differently: sizes above 2^32, NULLs, nested and non-ASCII JSON.

/** A store on a fresh database (or `database` again, a restarted server), closed after the test. */
export type OpenStore = (database?: string) => Promise<{ store: Store; database: string }>;

/** A duplicate key or a row still referred to, the same coded error on every engine. */
export const CONFLICT = { name: 'StoreError', code: 'FLOTILLA_ERR_STORE_CONFLICT', status: 409 };

/** A lowercase-hex sha256 made of one repeated byte ('a1' → a1a1…). */
export const sha = (byte: string): string => byte.repeat(32);

/** Above 2^32: a 32-bit column or a float round trip would change it. */
export const BIG_SIZE = 5_000_000_123;

export function manifest(
  version: string,
  image: string,
  over: Partial<ReleaseManifest> = {},
): ReleaseManifest {
  return {
    _type: 'release',
    schemaVersion: 1,
    kind: 'release',
    name: 'TEST-ONLY image',
    version,
    securityVersion: 3,
    compatible: ['rpi4', 'rpi5'],
    image: { format: 'raw', sha256: image, size: BIG_SIZE, chunkSize: 4096, chunkHashes: [] },
    sbom: { format: 'CycloneDX-1.5', sha256: sha('5b'), size: 12 },
    provenance: {
      sourceRevision: 'r1',
      builder: 'TEST-ONLY ünïcode',
      buildTime: '2026-01-01T00:00:00Z',
      inputs: [],
    },
    created: '2026-01-01T00:00:00Z',
    expires: '2027-01-01T00:00:00Z',
    ...over,
  };
}

export const envelope = (m: ReleaseManifest): SignedRelease => ({
  signed: m,
  signatures: [{ keyid: 'TEST-ONLY', sig: '00' }],
});

/** Adds the image and sbom artifacts, then the release (the foreign keys need both). */
export async function addRelease(
  s: Store,
  version: string,
  image: string,
  now: number,
): Promise<ReleaseManifest> {
  const m = manifest(version, image);
  await s.artifacts.add(image, BIG_SIZE, 'image', now);
  await s.artifacts.add(m.sbom.sha256, m.sbom.size, 'sbom', now);
  await s.releases.insert(m, envelope(m), now);
  return m;
}

export const deltaDescriptor = (from: string, to: string, expires: string): SignedDelta => ({
  signed: {
    _type: 'delta',
    schemaVersion: 1,
    codec: 'zstd-patch',
    fromImageSha256: from,
    toImageSha256: to,
    deltaSha256: sha('de'),
    deltaSize: BIG_SIZE,
    fromVersion: '1.0.0',
    toVersion: '1.1.0',
    expires,
  },
  signatures: [{ keyid: 'TEST-ONLY', sig: '00' }],
});

export function vulnRecord(id: string, modified: number, over: Partial<VulnRecord> = {}): VulnRecord {
  return {
    id,
    modified,
    withdrawn: false,
    aliases: [],
    summary: null,
    severity: 'high',
    score: 7.5,
    affected: [],
    ...over,
  };
}

export const finding = (id: string): Finding => ({
  id,
  aliases: ['CVE-2026-0001'],
  package: 'openssl',
  sourcePackage: 'openssl',
  purl: 'pkg:deb/debian/openssl@3.0.1',
  installed: '3.0.1',
  fixed: null,
  severity: 'critical',
  score: 9.8,
  summary: 'TEST-ONLY “quoted” summary',
  ecosystem: 'Debian:12',
});

/** Adds an accepted device (deployments reference devices). */
export const addDevice = (s: Store, id: string, now = 1) =>
  s.devices.insert({ id, publicKey: 'ab'.repeat(32), status: 'accepted', now });

/** A state report; its time grows with seq (seq 1 → 00:00:01). */
export const stateReport = (seq: number, over: Partial<DeviceStateMessage> = {}): DeviceStateMessage => ({
  schemaVersion: 1,
  type: 'state',
  seq,
  ts: `2026-01-01T00:00:${String(seq).padStart(2, '0')}Z`,
  version: '1.0.0',
  imageSha256: sha('a1'),
  securityVersion: 1,
  activeSlot: 'A',
  agentState: 'Idle',
  deploymentId: null,
  lastError: null,
  ...over,
});

/** Makes the store refuse every update of one row of `table`, as a damaged table would. */
export async function refuseUpdatesOf(
  s: Store,
  id: string,
  table: 'devices' | 'deployments' = 'devices',
): Promise<void> {
  const name = `refuse_${table}`;
  if (s.sql.dialect === 'sqlite') {
    await s.sql.run(`CREATE TRIGGER ${name} BEFORE UPDATE ON ${table} WHEN OLD.id = '${id}'
      BEGIN SELECT RAISE(ABORT, 'TEST-ONLY refused'); END`);
    return;
  }
  await s.sql.run(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'TEST-ONLY refused'; END $$`);
  await s.sql.run(`CREATE TRIGGER ${name} BEFORE UPDATE ON ${table} FOR EACH ROW
    WHEN (OLD.id = '${id}') EXECUTE FUNCTION ${name}()`);
}
