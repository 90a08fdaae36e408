import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildRoot, generateKeyPair, isoAfter, type KeyPair, signDocument } from '@flotilla/protocol';
import { type BuiltRelease, buildRelease, type ReleaseMeta, writeBundle } from '../src/index.js';

/** A fresh scratch directory per test file; removed by the returned function. */
export async function scratch(
  prefix = 'flotilla-image-test-',
): Promise<{ dir: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, done: () => rm(dir, { recursive: true, force: true }) };
}

export interface TreeSpec {
  files: Record<string, string | Buffer>;
  links?: Record<string, string>;
  executables?: string[];
}

/**
 * Writes a rootfs tree. `order` shuffles creation order and `timeSeed` sets random times, so two
 * writes of the same spec differ in everything but content (what the builder must normalise).
 */
export async function writeTree(
  root: string,
  spec: TreeSpec,
  opts: { reverse?: boolean; timeSeed?: number } = {},
): Promise<void> {
  const paths = Object.keys(spec.files);
  if (opts.reverse) paths.reverse();
  await mkdir(root, { recursive: true });
  for (const p of paths) {
    const abs = join(root, p);
    await mkdir(dirname(abs), { recursive: true });
    await writeFile(abs, spec.files[p]!, { mode: spec.executables?.includes(p) ? 0o775 : 0o664 });
    const t = 1_000_000_000 + (opts.timeSeed ?? 0) * 7919 + paths.indexOf(p) * 13;
    await utimes(abs, t + 0.123, t + 0.456);
  }
  for (const [p, target] of Object.entries(spec.links ?? {})) {
    await mkdir(dirname(join(root, p)), { recursive: true });
    await symlink(target, join(root, p));
  }
}

export function sampleTree(extra: Record<string, string | Buffer> = {}): TreeSpec {
  return {
    files: {
      'etc/hostname': 'device\n',
      'etc/flotilla/release': '1.0.0\n',
      'etc/flotilla/sim-behaviour.json': '{"boots": true, "healthy": true, "healthReason": null}\n',
      'usr/bin/app': deterministicBlob(40_000, 1),
      'usr/lib/libdemo.so.1': deterministicBlob(70_000, 2),
      'var/lib/dpkg/status':
        'Package: busybox\nStatus: install ok installed\nVersion: 1:1.36.1-3\nArchitecture: arm64\n\n',
      'opt/app/my file with spaces.txt': 'spaces are fine\n',
      ...extra,
    },
    links: { 'bin/sh': '/usr/bin/app', 'usr/lib/libdemo.so': 'libdemo.so.1' },
    executables: ['usr/bin/app'],
  };
}

/** Pseudo-random but repeatable bytes (xorshift), for "binaries" in test trees. */
export function deterministicBlob(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function randomTree(): TreeSpec {
  return { files: { 'etc/random': randomBytes(64) } };
}

/** TEST-ONLY keys for every role and a self-signed trust root naming them. */
export function testTrust(now = new Date()): {
  keys: Record<'root' | 'release' | 'delta' | 'recovery', KeyPair>;
  root: ReturnType<typeof signDocument>;
} {
  const keys = {
    root: generateKeyPair(),
    release: generateKeyPair(),
    delta: generateKeyPair(),
    recovery: generateKeyPair(),
  };
  const meta = buildRoot({
    version: 1,
    expires: isoAfter(now, 365),
    roles: {
      root: { keys: [keys.root], threshold: 1 },
      release: { keys: [keys.release], threshold: 1 },
      delta: { keys: [keys.delta], threshold: 1 },
      recovery: { keys: [keys.recovery], threshold: 1 },
    },
  });
  return { keys, root: signDocument(meta, [keys.root]) };
}

/**
 * Builds a signed ext4 release of `tree` (2 MiB unless `partitionSize`) (release key, board-a, 1.0.0 unless `meta` says
 * otherwise) under `dir` and writes its bundle to `dir`/demo.flot.
 */
export async function buildSampleBundle(
  dir: string,
  trust: ReturnType<typeof testTrust>,
  opts: {
    now: Date;
    chunkSize: number;
    tree?: TreeSpec;
    meta?: Partial<ReleaseMeta>;
    partitionSize?: number;
  },
): Promise<{ release: BuiltRelease; bundlePath: string }> {
  const input = join(dir, 'rootfs');
  await writeTree(input, opts.tree ?? sampleTree());
  const release = await buildRelease({
    input,
    format: 'ext4',
    partitionSize: opts.partitionSize ?? 2 * 1024 * 1024,
    outDir: join(dir, 'out'),
    chunkSize: opts.chunkSize,
    meta: {
      name: 'demo',
      version: '1.0.0',
      securityVersion: 1,
      compatible: ['board-a'],
      now: opts.now,
      ...opts.meta,
    },
    signingKey: { key: trust.keys.release, role: 'release' },
  });
  const bundlePath = join(dir, 'demo.flot');
  await writeBundle({
    manifest: release.manifest,
    imagePath: release.imagePath,
    sbom: release.sbom,
    output: bundlePath,
  });
  return { release, bundlePath };
}
