import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { slotBackingRoot } from '../src/bootloader/uboot.js';
import { GrubBootloader } from '../src/index.js';
import { hashSlot } from '../src/slots/hash-slot.js';
import { deviceNumberText, FileSlotDevice, MemorySlotDevice } from '../src/slots/slot-device.js';

/**
 * The agent on a real board: slots are block devices. Device nodes are made with mknod (with the
 * numbers of the filesystem holding the test directory), so the real stat() logic is exercised
 * without mounting anything.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-realdev-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

function mknod(path: string, dev: number): boolean {
  const [major, minor] = deviceNumberText(dev).split(':');
  try {
    execFileSync('mknod', [path, 'b', major!, minor!], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const canMknod = (() => {
  try {
    execFileSync('mknod', ['--version'], { stdio: 'ignore' });
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
})();

describe.skipIf(!canMknod)('agent on a real device', () => {
  it('knows its booted slot from the device backing / even when the command line names the other one', async () => {
    const rootDev = (await stat(dir)).dev;
    const other = rootDev === 0x0700 ? 0x0701 : 0x0700;
    expect(mknod(join(dir, 'slot-a'), other) && mknod(join(dir, 'slot-b'), rootDev)).toBe(true);
    const cmdline = join(dir, 'cmdline');
    await writeFile(cmdline, 'root=PARTLABEL=rootfs-A flotilla.slot=A\n');
    expect(await slotBackingRoot({ A: join(dir, 'slot-a'), B: join(dir, 'slot-b') }, dir)).toBe('B');
    const grub = new GrubBootloader({
      envFile: join(dir, 'grubenv'),
      cmdlineFile: cmdline,
      slotDevices: { A: join(dir, 'slot-a'), B: join(dir, 'slot-b') },
      rootPath: dir,
    });
    expect(await grub.bootedSlot()).toBe('B');
  });

  it('falls back to the command line when no slot device backs / (simulators, files)', async () => {
    const cmdline = join(dir, 'cmdline');
    await writeFile(cmdline, 'flotilla.slot=A\n');
    await writeFile(join(dir, 'slot-a.img'), Buffer.alloc(1024));
    const grub = new GrubBootloader({
      envFile: join(dir, 'grubenv'),
      cmdlineFile: cmdline,
      slotDevices: { A: join(dir, 'slot-a.img'), B: join(dir, 'slot-b.img') },
      rootPath: dir,
    });
    expect(await grub.bootedSlot()).toBe('A');
  });

  it('refuses to open a mounted slot for writing', async () => {
    const slotDev = 0x07c8; // loop device 7:200, named as mounted below
    expect(mknod(join(dir, 'slot-b'), slotDev)).toBe(true);
    const mountinfo = join(dir, 'mountinfo');
    await writeFile(
      mountinfo,
      `36 25 ${deviceNumberText(slotDev)} / /mnt rw,relatime shared:1 - ext4 /dev/loop200 rw\n`,
    );
    const slot = new FileSlotDevice('B', join(dir, 'slot-b'), 1024 * 1024, { mountinfo });
    await expect(slot.openWrite()).rejects.toMatchObject({ code: 'FLOTILLA_ERR_AGENT_SLOT_MOUNTED' });
  });
});

describe('read-back hash', () => {
  it('drops the slot cache before reading, so the page cache of the write cannot vouch for the medium', async () => {
    const calls: string[] = [];
    const mem = new MemorySlotDevice('B', 4096);
    const dev = {
      name: 'B',
      size: () => mem.size(),
      openWrite: () => mem.openWrite(),
      openRead: async () => {
        calls.push('openRead');
        return mem.openRead();
      },
      dropCache: async () => {
        calls.push('dropCache');
      },
    };
    await hashSlot(dev, { size: 4096, chunkSize: 4096, chunkHashes: [''] }, 4096);
    expect(calls).toEqual(['dropCache', 'openRead']);
  });
});
