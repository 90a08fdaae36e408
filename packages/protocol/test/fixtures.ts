import {
  buildRoot,
  generateKeyPair,
  isoAfter,
  type KeyPair,
  type ReleaseManifest,
  type RootMetadata,
  SCHEMA_VERSION,
  sha256Hex,
  signDocument,
} from '../src/index.js';

/** TEST-ONLY keys and metadata, generated per run: nothing secret is committed. */
export const NOW = new Date('2026-06-01T12:00:00Z');

export interface TestKeys {
  root: KeyPair[];
  release: KeyPair;
  delta: KeyPair;
  recovery: KeyPair;
  rootMeta: RootMetadata;
}

export function makeKeys(
  opts: { rootThreshold?: number; version?: number; expiresDays?: number } = {},
): TestKeys {
  const root = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const release = generateKeyPair();
  const delta = generateKeyPair();
  const recovery = generateKeyPair();
  const rootMeta = buildRoot({
    version: opts.version ?? 1,
    expires: isoAfter(NOW, opts.expiresDays ?? 365),
    roles: {
      root: { keys: root, threshold: opts.rootThreshold ?? 2 },
      release: { keys: [release], threshold: 1 },
      delta: { keys: [delta], threshold: 1 },
      recovery: { keys: [recovery], threshold: 1 },
    },
  });
  return { root, release, delta, recovery, rootMeta };
}

export function makeManifest(overrides: Partial<ReleaseManifest> = {}): ReleaseManifest {
  const chunk = sha256Hex('chunk');
  return {
    _type: 'release',
    schemaVersion: SCHEMA_VERSION,
    kind: 'release',
    name: 'demo-os',
    version: '1.1.0',
    securityVersion: 3,
    compatible: ['sim-board-v1'],
    image: {
      format: 'ext4',
      sha256: sha256Hex('image'),
      size: 8192,
      chunkSize: 4096,
      chunkHashes: [chunk, chunk],
    },
    sbom: { format: 'CycloneDX-1.5', sha256: sha256Hex('sbom'), size: 100 },
    provenance: { sourceRevision: 'abc123', builder: 'test', buildTime: '2026-05-01T00:00:00Z', inputs: [] },
    created: '2026-05-01T00:00:00Z',
    expires: isoAfter(NOW, 30),
    ...overrides,
  };
}

export function signedRelease(keys: TestKeys, overrides: Partial<ReleaseManifest> = {}, signer?: KeyPair) {
  return signDocument(makeManifest(overrides), [signer ?? keys.release]);
}
