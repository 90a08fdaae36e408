import { ImageError } from './errors.js';

/**
 * A GUID partition table written byte by byte (UEFI 2.10 §5.3): protective MBR in LBA 0,
 * primary header in LBA 1, 128 entries of 128 bytes from LBA 2, and the backup entries and
 * header at the end of the disk. Both headers carry CRC32s of themselves and of the entries.
 * 512-byte logical sectors (eMMC and SD cards).
 */
export const SECTOR = 512;
const ENTRY_COUNT = 128;
const ENTRY_SIZE = 128;
const ENTRIES_SECTORS = (ENTRY_COUNT * ENTRY_SIZE) / SECTOR; // 32

/** A table that cannot be built from these sizes and names (they come from the disk options). */
const layoutError = (why: string) =>
  new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `partition table: ${why}`);

export const GPT_TYPES = {
  /** Linux filesystem data. */
  linuxData: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  /** U-Boot environment (as listed by the UAPI discoverable partitions registry). */
  ubootEnv: '3DE21764-95BD-54BD-A5C3-4ABE786F38A8',
} as const;

export interface GptPartition {
  name: string;
  typeGuid: string;
  guid: string;
  firstLba: number;
  lastLba: number;
}

export interface GptImage {
  /** LBA 0 .. 33: protective MBR, primary header, primary entries. */
  head: Buffer;
  /** Backup entries and header, written at `tailOffset`. */
  tail: Buffer;
  tailOffset: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** GUID text to its on-disk form: the first three fields little-endian, the rest as written. */
export function guidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw layoutError(`bad GUID ${guid}`);
  const b = Buffer.from(hex, 'hex');
  return Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8),
  ]);
}

export function guidText(bytes: Uint8Array): string {
  const b = Buffer.from(bytes);
  const h = Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8, 16),
  ]).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`.toUpperCase();
}

export function buildGpt(diskBytes: number, diskGuid: string, partitions: GptPartition[]): GptImage {
  if (diskBytes % SECTOR !== 0) throw layoutError(`disk size ${diskBytes} is not a multiple of ${SECTOR}`);
  const lastLba = diskBytes / SECTOR - 1;
  const firstUsable = 2 + ENTRIES_SECTORS;
  const lastUsable = lastLba - 1 - ENTRIES_SECTORS;
  if (partitions.length > ENTRY_COUNT)
    throw layoutError(`${partitions.length} partitions, at most ${ENTRY_COUNT}`);
  const entries = Buffer.alloc(ENTRY_COUNT * ENTRY_SIZE);
  partitions.forEach((p, i) => {
    if (p.firstLba < firstUsable || p.lastLba > lastUsable || p.lastLba < p.firstLba)
      throw layoutError(`partition ${p.name} outside the usable area`);
    const e = entries.subarray(i * ENTRY_SIZE, (i + 1) * ENTRY_SIZE);
    guidBytes(p.typeGuid).copy(e, 0);
    guidBytes(p.guid).copy(e, 16);
    e.writeBigUInt64LE(BigInt(p.firstLba), 32);
    e.writeBigUInt64LE(BigInt(p.lastLba), 40);
    e.writeBigUInt64LE(0n, 48);
    const name = Buffer.from(p.name, 'utf16le');
    if (name.length > 72) throw layoutError(`partition name ${p.name} longer than 36 characters`);
    name.copy(e, 56);
  });
  const entriesCrc = crc32(entries);
  const header = (current: number, backup: number, entriesLba: number): Buffer => {
    const h = Buffer.alloc(SECTOR);
    h.write('EFI PART', 0, 'latin1');
    h.writeUInt32LE(0x00010000, 8);
    h.writeUInt32LE(92, 12);
    h.writeBigUInt64LE(BigInt(current), 24);
    h.writeBigUInt64LE(BigInt(backup), 32);
    h.writeBigUInt64LE(BigInt(firstUsable), 40);
    h.writeBigUInt64LE(BigInt(lastUsable), 48);
    guidBytes(diskGuid).copy(h, 56);
    h.writeBigUInt64LE(BigInt(entriesLba), 72);
    h.writeUInt32LE(ENTRY_COUNT, 80);
    h.writeUInt32LE(ENTRY_SIZE, 84);
    h.writeUInt32LE(entriesCrc, 88);
    h.writeUInt32LE(crc32(h.subarray(0, 92)), 16); // computed with its own CRC field zero
    return h;
  };
  const mbr = Buffer.alloc(SECTOR);
  const p = mbr.subarray(446, 462);
  p[0] = 0x00;
  p.writeUIntBE(0x000200, 1, 3); // CHS of LBA 1
  p[4] = 0xee;
  p.writeUIntBE(0xffffff, 5, 3);
  p.writeUInt32LE(1, 8);
  p.writeUInt32LE(Math.min(lastLba, 0xffffffff), 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const head = Buffer.concat([mbr, header(1, lastLba, 2), entries]);
  const tail = Buffer.concat([entries, header(lastLba, 1, lastLba - ENTRIES_SECTORS)]);
  return { head, tail, tailOffset: (lastLba - ENTRIES_SECTORS) * SECTOR };
}

/** A disk image whose partition table is missing or damaged (inspection of a built or read-back disk). */
const gptError = (why: string) => new ImageError('FLOTILLA_ERR_IMAGE_INPUT_INVALID', `disk image: ${why}`);

export interface ParsedGpt {
  diskGuid: string;
  partitions: GptPartition[];
}

/** Reads and checks a primary GPT header and its entries (CRCs, signature); tests and `disk` inspection use it. */
export function parseGpt(head: Buffer): ParsedGpt {
  const h = head.subarray(SECTOR, 2 * SECTOR);
  if (h.toString('latin1', 0, 8) !== 'EFI PART') throw gptError('no GPT signature in LBA 1');
  const copy = Buffer.from(h.subarray(0, 92));
  const crc = copy.readUInt32LE(16);
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== crc) throw gptError('GPT header CRC mismatch');
  const count = h.readUInt32LE(80);
  const size = h.readUInt32LE(84);
  const lba = Number(h.readBigUInt64LE(72));
  const entries = head.subarray(lba * SECTOR, lba * SECTOR + count * size);
  if (crc32(entries) !== h.readUInt32LE(88)) throw gptError('GPT entries CRC mismatch');
  const partitions: GptPartition[] = [];
  for (let i = 0; i < count; i++) {
    const e = entries.subarray(i * size, (i + 1) * size);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    partitions.push({
      typeGuid: guidText(e.subarray(0, 16)),
      guid: guidText(e.subarray(16, 32)),
      firstLba: Number(e.readBigUInt64LE(32)),
      lastLba: Number(e.readBigUInt64LE(40)),
      name: e.toString('utf16le', 56, 128).replace(/\0+$/, ''),
    });
  }
  return { diskGuid: guidText(h.subarray(56, 72)), partitions };
}
