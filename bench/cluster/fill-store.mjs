// Fills a server's store fast for the engine bench: accepted devices by multi-row INSERTs into the
// store's own `devices` table (the columns DevicesRepo.insert writes, plus the reported version),
// and a release row through the releases repository. The SQL is the shared subset both engines
// run (`?` placeholders, rewritten for PostgreSQL by the driver).

import { ReleaseManifest, SCHEMA_VERSION, validate } from '@flotilla/protocol';

const ROWS_PER_INSERT = 1000; // 11 parameters each: under SQLite's and PostgreSQL's limits

export const FILL_HARDWARE = 'bench-board';
export const fillDeviceId = (i) => `eng-${String(i).padStart(7, '0')}`;

/** `n` accepted devices on 1.0.0, offline, in transactions of 50 INSERTs; calls `progress(done)`. */
export async function fillDevices(store, n, now, progress = () => undefined) {
  for (let start = 0; start < n; ) {
    await store.tx(async (tx) => {
      for (let k = 0; k < 50 && start < n; k++) {
        const count = Math.min(ROWS_PER_INSERT, n - start);
        const values = [];
        for (let i = start; i < start + count; i++)
          values.push(
            fillDeviceId(i),
            i.toString(16).padStart(64, '0'),
            'accepted',
            FILL_HARDWARE,
            JSON.stringify([`site-${i % 200}`]),
            `g${i % 100}`,
            'prod',
            '1.0.0',
            0,
            now,
            now,
          );
        await tx.sql.run(
          `INSERT INTO devices (id, public_key, status, hardware, tags, grp, channel, version, online, created, updated)
           VALUES ${Array(count).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
          values,
        );
        start += count;
      }
    });
    progress(start);
  }
}

/**
 * A deployment offered to each of the first `n` filled devices in rollout `rolloutId` (as the
 * engine's pass leaves them), in multi-row INSERTs; returns their ids in device order.
 */
export async function fillDeployments(store, rolloutId, n, now) {
  const ids = Array.from({ length: n }, (_, i) => `dep_bench_${String(i).padStart(7, '0')}`);
  await store.tx(async (tx) => {
    for (let start = 0; start < n; start += ROWS_PER_INSERT) {
      const count = Math.min(ROWS_PER_INSERT, n - start);
      const values = [];
      for (let i = start; i < start + count; i++)
        values.push(ids[i], rolloutId, fillDeviceId(i), 0, 'offered', 1, now, '1.0.0', now, now);
      await tx.sql.run(
        `INSERT INTO deployments (id, rollout_id, device_id, phase, state, attempts, offered_at, from_version, created, updated)
         VALUES ${Array(count).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
        values,
      );
    }
  });
  return ids;
}

/**
 * Release 1.1.0 for the bench's hardware (its image registered as an artifact). The engine never verifies the envelope (devices do), and
 * with every device offline no offer is built from it: the signature list stays empty.
 */
export async function insertRelease(store, now) {
  const iso = (ms) => new Date(ms).toISOString();
  const manifest = {
    _type: 'release',
    schemaVersion: SCHEMA_VERSION,
    kind: 'release',
    name: 'bench-image',
    version: '1.1.0',
    securityVersion: 0,
    compatible: [FILL_HARDWARE],
    image: { format: 'ext4', sha256: 'ab'.repeat(32), size: 2 ** 26, chunkSize: 2 ** 20, chunkHashes: [] },
    sbom: { format: 'CycloneDX-1.5', sha256: 'cd'.repeat(32), size: 1024 },
    provenance: { sourceRevision: 'bench', builder: 'bench', buildTime: iso(now), inputs: [] },
    created: iso(now),
    expires: iso(now + 365 * 86_400_000),
  };
  validate(ReleaseManifest, manifest, 'release');
  // The image row only (releases refer to it); no file: the bench never downloads it.
  await store.artifacts.add(manifest.image.sha256, manifest.image.size, 'image', now);
  return store.releases.insert(manifest, { signed: manifest, signatures: [] }, now);
}
