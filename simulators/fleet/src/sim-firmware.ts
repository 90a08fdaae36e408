import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BuiltRelease, buildRelease, findTool } from '@flotilla/image';
import type { ImageFormat, KeyPair } from '@flotilla/protocol';
import { SimError } from './errors.js';
import { createRng } from './rng.js';

/**
 * Firmware for simulations: the demo's story (1.0.0 → 1.1.0 → 1.2.0-bad, plus a recovery image)
 * as real signed releases with real filesystem images, at a chosen size. Each image carries
 * `/etc/flotilla/release` and `/etc/flotilla/sim-behaviour.json` (docs/images.md#5-demo-firmware-firmware-images); the payload is
 * deterministic pseudo-random files of which each version changes a few, so deltas stay small
 * the way they do between real builds.
 */
export interface SimFirmwareSpec {
  version: string;
  kind: 'release' | 'recovery';
  securityVersion: number;
  behaviour: { boots: boolean; healthy: boolean; healthReason: string | null };
  /** Payload files whose content this version changes (by index). */
  changed: number[];
}

export const DEMO_STORY: readonly SimFirmwareSpec[] = [
  {
    version: '1.0.0',
    kind: 'release',
    securityVersion: 1,
    behaviour: { boots: true, healthy: true, healthReason: null },
    changed: [],
  },
  {
    version: '1.1.0',
    kind: 'release',
    securityVersion: 1,
    behaviour: { boots: true, healthy: true, healthReason: null },
    changed: [1, 5],
  },
  {
    version: '1.2.0-bad',
    kind: 'release',
    securityVersion: 1,
    behaviour: { boots: true, healthy: false, healthReason: 'app.service failed: exit code 3' },
    changed: [1, 2, 5],
  },
  {
    version: '1.0.1-recovery',
    kind: 'recovery',
    securityVersion: 1,
    behaviour: { boots: true, healthy: true, healthReason: null },
    changed: [0],
  },
];

export interface SimFirmwareOptions {
  outDir: string;
  keys: { release: KeyPair; recovery: KeyPair };
  hardware: string;
  format?: ImageFormat;
  /** Partition size in bytes (the slot size). */
  partitionSize: number;
  /** Number of payload files and their size; content ≈ files × fileSize. */
  files?: number;
  fileSize?: number;
  story?: readonly SimFirmwareSpec[];
  name?: string;
}

export interface SimFirmware {
  format: ImageFormat;
  partitionSize: number;
  releases: Map<string, BuiltRelease>;
}

/** Fails early, naming the Debian package, when a tool the image builder needs is missing. */
export function checkTools(format: ImageFormat): void {
  const needs: Record<string, [string, string][]> = {
    ext4: [
      ['mke2fs', 'e2fsprogs'],
      ['debugfs', 'e2fsprogs'],
    ],
    squashfs: [
      ['mksquashfs', 'squashfs-tools'],
      ['unsquashfs', 'squashfs-tools'],
    ],
    erofs: [
      ['mkfs.erofs', 'erofs-utils'],
      ['fsck.erofs', 'erofs-utils'],
    ],
    raw: [],
  };
  for (const [tool, pkg] of needs[format] ?? []) {
    if (!findTool(tool))
      throw new SimError(
        'FLOTILLA_ERR_SIM_TOOL_MISSING',
        `${tool} not found: install the Debian package ${pkg} (apt-get install -y ${pkg})`,
      );
  }
}

export async function buildSimFirmware(o: SimFirmwareOptions): Promise<SimFirmware> {
  const format = o.format ?? 'ext4';
  checkTools(format);
  const files = o.files ?? 8;
  const fileSize = o.fileSize ?? 64 * 1024;
  const releases = new Map<string, BuiltRelease>();
  await mkdir(o.outDir, { recursive: true });
  const version: number[] = new Array(files).fill(0);
  for (const spec of o.story ?? DEMO_STORY) {
    for (const i of spec.changed) if (i < files) version[i] = (version[i] ?? 0) + 1;
    const root = join(o.outDir, `rootfs-${spec.version}`);
    await rm(root, { recursive: true, force: true });
    await mkdir(join(root, 'etc/flotilla'), { recursive: true });
    await mkdir(join(root, 'usr/lib/sim-app'), { recursive: true });
    await writeFile(join(root, 'etc/flotilla/release'), `${spec.version}\n`);
    await writeFile(join(root, 'etc/flotilla/sim-behaviour.json'), `${JSON.stringify(spec.behaviour)}\n`);
    await writeFile(join(root, 'etc/os-release'), `NAME="Flotilla sim"\nVERSION_ID=${spec.version}\n`);
    for (let i = 0; i < files; i++) {
      await writeFile(join(root, 'usr/lib/sim-app', `part-${i}.bin`), payload(i, version[i] ?? 0, fileSize));
    }
    const built = await buildRelease({
      input: root,
      outDir: o.outDir,
      format,
      partitionSize: o.partitionSize,
      label: 'rootfs',
      meta: {
        name: o.name ?? 'sim-firmware',
        version: spec.version,
        securityVersion: spec.securityVersion,
        compatible: [o.hardware],
        kind: spec.kind,
        builder: 'flotilla fleet-simulator',
        sourceRevision: 'sim',
      },
      signingKey: {
        key: spec.kind === 'recovery' ? o.keys.recovery : o.keys.release,
        role: spec.kind,
        label: 'TEST-ONLY',
      },
      chunkSize: Math.min(1024 * 1024, Math.max(4096, 2 ** Math.floor(Math.log2(o.partitionSize / 16)))),
    });
    await rm(root, { recursive: true, force: true });
    releases.set(spec.version, built);
  }
  return { format, partitionSize: o.partitionSize, releases };
}

/** Deterministic bytes of payload file `i` at revision `rev`: random-looking, so not compressible away. */
function payload(i: number, rev: number, size: number): Buffer {
  const rng = createRng(i * 7919 + rev * 104729 + 1);
  const buf = Buffer.allocUnsafe(size);
  for (let p = 0; p + 4 <= size; p += 4) buf.writeUInt32LE(Math.floor(rng.next() * 0x100000000), p);
  for (let p = size - (size % 4); p < size; p++) buf[p] = 0;
  return buf;
}
