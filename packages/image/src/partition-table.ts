import { open } from 'node:fs/promises';
import { ioError } from './errors.js';

/**
 * Recognises a partition table at the start of a medium, so `flash --partition` does not write a
 * slot image over a whole disk. GPT: "EFI PART" at LBA 1 (512- or 4096-byte sectors). MBR: the
 * 0x55AA signature at byte 510 and four entries that read as partitions — a FAT or NTFS boot
 * sector has the same signature but is one filesystem, not a table, and is not reported.
 */
export interface PartitionTable {
  scheme: 'gpt' | 'mbr';
  /** Where the table was recognised, for the message. */
  evidence: string;
}

/** Enough to see LBA 1 on 4096-byte-sector media. */
export const PARTITION_TABLE_PROBE_BYTES = 8192;

const GPT_SIGNATURE = 'EFI PART';
const MBR_ENTRIES = 446;
const MBR_ENTRY_SIZE = 16;

export function detectPartitionTable(head: Buffer): PartitionTable | null {
  for (const sector of [512, 4096]) {
    if (head.length >= sector + 8 && head.toString('latin1', sector, sector + 8) === GPT_SIGNATURE)
      return { scheme: 'gpt', evidence: `"${GPT_SIGNATURE}" at byte ${sector}` };
  }
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa || isFilesystemBootSector(head))
    return null;
  let used = 0;
  for (let i = 0; i < 4; i++) {
    const e = head.subarray(MBR_ENTRIES + i * MBR_ENTRY_SIZE, MBR_ENTRIES + (i + 1) * MBR_ENTRY_SIZE);
    const status = e[0]!;
    const type = e[4]!;
    const start = e.readUInt32LE(8);
    const sectors = e.readUInt32LE(12);
    if (type === 0 && sectors === 0) continue;
    // Boot code in place of entries has stray status bytes or empty extents.
    if ((status !== 0x00 && status !== 0x80) || type === 0 || start === 0 || sectors === 0) return null;
    used++;
  }
  return used > 0 ? { scheme: 'mbr', evidence: `0x55AA at byte 510 and ${used} MBR entries` } : null;
}

/** FAT12/16/32, exFAT and NTFS boot sectors end in 0x55AA too. */
function isFilesystemBootSector(head: Buffer): boolean {
  const text = (from: number, to: number) => head.toString('latin1', from, to);
  return (
    text(54, 57) === 'FAT' ||
    text(82, 85) === 'FAT' ||
    text(3, 11) === 'EXFAT   ' ||
    text(3, 11) === 'NTFS    '
  );
}

/** The first bytes of a file or block device (fewer when it is shorter). */
export async function readHead(path: string, bytes = PARTITION_TABLE_PROBE_BYTES): Promise<Buffer> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, 'r');
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } catch (err) {
    throw ioError(`cannot read the start of ${path}`, err);
  } finally {
    await fh?.close();
  }
}
