import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SimError } from './errors.js';

/**
 * File-backed A/B slots for many simulated devices on one disk. Provisioning is cheap: a slot
 * may point at a shared, read-only base image (content-addressed by sha256), so 1,000 devices
 * on 1.0.0 cost one image file. Writing a slot is copy-on-write: `prepareWrite` gives the device
 * its own file first, so every device really writes (and later reads back) its own update and
 * never touches another device's bytes.
 */
export type SlotName = 'A' | 'B';
export const SLOT_NAMES: readonly SlotName[] = ['A', 'B'];

type SlotMapping = { kind: 'shared'; sha256: string } | { kind: 'own' } | { kind: 'empty' };
interface SlotTable {
  slotSize: number;
  A: SlotMapping;
  B: SlotMapping;
}

export class SlotStore {
  private readonly casDir: string;
  private readonly known = new Map<string, string>();

  constructor(readonly root: string) {
    this.casDir = join(root, 'cas');
  }

  /** Adds an image to the shared store; returns its sha256. Idempotent. */
  async addBase(imagePath: string): Promise<string> {
    const sha256 = await sha256OfFile(imagePath);
    const dest = this.basePath(sha256);
    if (!this.known.has(sha256)) {
      await mkdir(this.casDir, { recursive: true });
      const exists = await stat(dest).then(
        () => true,
        () => false,
      );
      if (!exists) {
        const tmp = `${dest}.tmp-${process.pid}`;
        await copyFile(imagePath, tmp);
        await chmod(tmp, 0o444);
        await rename(tmp, dest);
      }
      this.known.set(sha256, dest);
    }
    return sha256;
  }

  basePath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `sha256 ${sha256}`);
    return join(this.casDir, `${sha256}.img`);
  }

  /** Creates (or reopens) the slots of one device. `initial` maps a slot to a shared base image. */
  async device(
    deviceDir: string,
    opts: { slotSize: number; initial?: Partial<Record<SlotName, string>> },
  ): Promise<DeviceSlots> {
    await mkdir(deviceDir, { recursive: true });
    const tablePath = join(deviceDir, 'slots.json');
    let table: SlotTable;
    try {
      table = JSON.parse(await readFile(tablePath, 'utf8')) as SlotTable;
    } catch {
      table = { slotSize: opts.slotSize, A: { kind: 'empty' }, B: { kind: 'empty' } };
      for (const s of SLOT_NAMES) {
        const sha = opts.initial?.[s];
        if (sha) {
          if (!this.known.has(sha))
            throw new SimError('FLOTILLA_ERR_SIM_SLOT', `base ${sha} not in the store`);
          table[s] = { kind: 'shared', sha256: sha };
        }
      }
      await writeJsonAtomic(tablePath, table);
    }
    return new DeviceSlots(this, deviceDir, tablePath, table);
  }
}

export class DeviceSlots {
  constructor(
    private readonly store: SlotStore,
    readonly dir: string,
    private readonly tablePath: string,
    private table: SlotTable,
  ) {}

  get slotSize(): number {
    return this.table.slotSize;
  }

  /** The file holding a slot's bytes now (a shared base, or the device's own file); null if empty. */
  readPath(slot: SlotName): string | null {
    const m = this.table[slot];
    if (m.kind === 'shared') return this.store.basePath(m.sha256);
    if (m.kind === 'own') return this.ownPath(slot);
    return null;
  }

  isShared(slot: SlotName): boolean {
    return this.table[slot].kind === 'shared';
  }

  /**
   * Gives the device its own writable file for `slot` (sparse, slot-sized) and returns its path.
   * A shared base is never written: the mapping switches to the own file first.
   */
  async prepareWrite(slot: SlotName): Promise<string> {
    const path = this.ownPath(slot);
    if (this.table[slot].kind !== 'own') {
      const fh = await open(path, 'w', 0o644).catch((err: unknown) => {
        throw new SimError('FLOTILLA_ERR_SIM_SLOT', `cannot create ${path}`, { cause: err });
      });
      try {
        await fh.truncate(this.table.slotSize);
      } finally {
        await fh.close();
      }
      this.table = { ...this.table, [slot]: { kind: 'own' } };
      await writeJsonAtomic(this.tablePath, this.table);
    }
    return path;
  }

  ownPath(slot: SlotName): string {
    return join(this.dir, `slot-${slot}.img`);
  }

  /** Removes the device's own files (the shared bases stay). */
  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

export async function sha256OfFile(path: string): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }))
      h.update(chunk as Buffer);
  } catch (err) {
    throw new SimError('FLOTILLA_ERR_SIM_SLOT', `cannot read ${path}`, { cause: err });
  }
  return h.digest('hex');
}

/** Write temp, fsync, rename: the table is either the old or the new one after a crash. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(`${JSON.stringify(value)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
