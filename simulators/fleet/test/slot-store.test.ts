import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlotStore } from '../src/slot-store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-slots-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('slot store', () => {
  it('shares one base file between devices and gives a writer its own copy', async () => {
    const img = join(dir, 'base.img');
    await writeFile(img, Buffer.alloc(8192, 1));
    const store = new SlotStore(join(dir, 'store'));
    const sha = await store.addBase(img);
    const a = await store.device(join(dir, 'd1'), { slotSize: 16384, initial: { A: sha } });
    const b = await store.device(join(dir, 'd2'), { slotSize: 16384, initial: { A: sha } });
    expect(a.readPath('A')).toBe(b.readPath('A'));
    expect(a.readPath('B')).toBeNull();

    const own = await a.prepareWrite('A');
    expect(own).not.toBe(b.readPath('A'));
    await writeFile(own, Buffer.alloc(10, 9), { flag: 'r+' });
    expect(a.readPath('A')).toBe(own);
    // the other device still sees the untouched base
    expect((await readFile(b.readPath('A') as string))[0]).toBe(1);
    expect((await stat(own)).size).toBe(16384);
  });

  it('remembers the slot table when a device is reopened (after a power cut)', async () => {
    const img = join(dir, 'base.img');
    await writeFile(img, Buffer.alloc(4096, 1));
    const store = new SlotStore(join(dir, 'store'));
    const sha = await store.addBase(img);
    const d = await store.device(join(dir, 'd1'), { slotSize: 8192, initial: { A: sha } });
    await d.prepareWrite('B');
    const again = await store.device(join(dir, 'd1'), { slotSize: 8192, initial: { A: sha } });
    expect(again.readPath('B')).toBe(d.ownPath('B'));
    expect(again.isShared('A')).toBe(true);
  });
});
