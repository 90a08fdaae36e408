import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectPartitionTable, findTool, readHead } from '../src/index.js';
import { scratch } from './helpers.js';

// Partition tables as the real tools write them: what `flash --partition` must refuse to write over,
// and the filesystems it must still write over (a slot that held an earlier image).
const MiB = 1024 * 1024;
let work: Awaited<ReturnType<typeof scratch>>;

beforeAll(async () => {
  work = await scratch();
});
afterAll(async () => work.done());

async function blank(name: string, size = 8 * MiB): Promise<string> {
  const path = join(work.dir, name);
  await writeFile(path, Buffer.alloc(size));
  return path;
}

describe('detectPartitionTable', () => {
  it.skipIf(!findTool('sgdisk'))('recognises a GPT written by sgdisk', async () => {
    const disk = await blank('gpt.img');
    execFileSync('sgdisk', ['-n', '1:2048:+2M', '-t', '1:8300', disk], { stdio: 'ignore' });
    expect(detectPartitionTable(await readHead(disk))).toMatchObject({ scheme: 'gpt' });
  });

  it.skipIf(!findTool('sfdisk'))('recognises an MBR written by sfdisk', async () => {
    const disk = await blank('mbr.img');
    execFileSync('sfdisk', ['--quiet', disk], { input: 'label: dos\nstart=2048, size=4096, type=83\n' });
    expect(detectPartitionTable(await readHead(disk))).toMatchObject({ scheme: 'mbr' });
  });

  it.skipIf(!findTool('mkfs.vfat'))(
    'does not take a FAT boot sector (also 0x55AA at 510) for a table',
    async () => {
      const fs = await blank('fat.img');
      execFileSync('mkfs.vfat', [fs], { stdio: 'ignore' });
      const head = await readHead(fs);
      expect([head[510], head[511]]).toEqual([0x55, 0xaa]);
      expect(detectPartitionTable(head)).toBeNull();
    },
  );

  it.skipIf(!findTool('mke2fs'))('does not take an ext4 filesystem or zeros for a table', async () => {
    const fs = await blank('ext4.img');
    execFileSync('mke2fs', ['-q', '-t', 'ext4', '-F', fs], { stdio: 'ignore' });
    expect(detectPartitionTable(await readHead(fs))).toBeNull();
    expect(detectPartitionTable(Buffer.alloc(8192))).toBeNull();
  });

  it('recognises GPT on 4096-byte-sector media and refuses stray bytes as MBR entries', async () => {
    const head = Buffer.alloc(8192);
    head.write('EFI PART', 4096, 'latin1');
    expect(detectPartitionTable(head)).toMatchObject({
      scheme: 'gpt',
      evidence: expect.stringContaining('4096'),
    });
    const noise = Buffer.alloc(512, 0x5a); // boot code where the entries would be
    noise[510] = 0x55;
    noise[511] = 0xaa;
    expect(detectPartitionTable(noise)).toBeNull();
  });

  it('reads fewer bytes from a short file, and a missing file is FLOTILLA_ERR_IMAGE_IO', async () => {
    const short = join(work.dir, 'short.bin');
    await writeFile(short, Buffer.alloc(100, 1));
    expect((await readHead(short)).length).toBe(100);
    expect(await readFile(short)).toHaveLength(100);
    await expect(readHead(join(work.dir, 'nope.bin'))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_IMAGE_IO',
    });
  });
});
