import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingTools } from '@flotilla/image';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Bootloader, FileBootloader, GrubBootloader, UbootBootloader } from '../src/index.js';
import { emulateGrubBoot, emulateUbootBoot } from '../src/testing.js';
import { makeImage, Rig, sha } from './helpers.js';

/**
 * One contract, three backends: the file backend, U-Boot through the real fw_printenv/fw_setenv
 * on an environment made with mkenvimage, GRUB through the real grub-editenv. "Power-on" runs
 * what the bootloader would do over the same env (boot-emulator.ts).
 */
interface Backend {
  bootloader: Bootloader;
  boot(): Promise<'A' | 'B'>;
}

const LIMIT = 3;

async function fileBackend(dir: string): Promise<Backend> {
  const b = await FileBootloader.create(join(dir, 'boot.json'), 'A', LIMIT);
  return { bootloader: b, boot: () => b.simulateBoot() };
}

async function ubootBackend(dir: string): Promise<Backend> {
  const envTxt = join(dir, 'env.txt');
  await writeFile(
    envTxt,
    [
      'flotilla_slot=A',
      'flotilla_good_slot=A',
      'upgrade_available=0',
      'bootcount=0',
      `bootlimit=${LIMIT}`,
      'bootcmd=run distro_bootcmd',
      '',
    ].join('\n'),
  );
  execFileSync('mkenvimage', ['-s', '0x4000', '-o', join(dir, 'uboot.env'), envTxt]);
  await writeFile(join(dir, 'fw_env.config'), `${join(dir, 'uboot.env')} 0x0000 0x4000\n`);
  const cmdline = join(dir, 'cmdline');
  const b = new UbootBootloader({ configFile: join(dir, 'fw_env.config'), cmdlineFile: cmdline });
  return { bootloader: b, boot: () => emulateUbootBoot(b.env, cmdline) };
}

async function grubBackend(dir: string): Promise<Backend> {
  const envFile = join(dir, 'grubenv');
  // made by GRUB's own tool, as the disk build does: the agent reads and writes its format
  execFileSync('grub-editenv', [envFile, 'create']);
  execFileSync('grub-editenv', [
    envFile,
    'set',
    'flotilla_slot=A',
    'flotilla_good_slot=A',
    'upgrade_available=0',
  ]);
  const cmdline = join(dir, 'cmdline');
  const b = new GrubBootloader({ envFile, bootlimit: LIMIT, cmdlineFile: cmdline });
  return { bootloader: b, boot: () => emulateGrubBoot(b.env, cmdline) };
}

const BACKENDS = { file: fileBackend, uboot: ubootBackend, grub: grubBackend };
/** The real tools each backend runs (libubootenv-tool + u-boot-tools, grub-common); CI installs them. */
const BACKEND_TOOLS: Record<string, string[]> = {
  file: [],
  uboot: ['fw_printenv', 'fw_setenv', 'mkenvimage'],
  grub: ['grub-editenv'],
};
const lacks = (name: string) => missingTools(BACKEND_TOOLS[name] ?? []).length > 0;

for (const [name, make] of Object.entries(BACKENDS)) {
  describe.skipIf(lacks(name))(`bootloader contract: ${name}`, () => {
    let dir: string;
    let be: Backend;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), `flotilla-bl-${name}-`));
      be = await make(dir);
    });
    afterEach(async () => rm(dir, { recursive: true, force: true }));

    it('boots the committed slot with no trial armed', async () => {
      expect(await be.boot()).toBe('A');
      expect(await be.bootloader.bootedSlot()).toBe('A');
      expect(await be.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
    });

    it('a trial boots the new slot up to the limit, then falls back to the good slot by itself', async () => {
      await be.boot();
      await be.bootloader.armTrial('B', 'A');
      expect(await be.bootloader.read()).toMatchObject({
        primary: 'B',
        good: 'A',
        trial: true,
        limit: LIMIT,
      });
      for (let i = 1; i <= LIMIT; i++) {
        expect(await be.boot()).toBe('B');
        expect((await be.bootloader.read()).attempts).toBe(i);
      }
      expect(await be.boot()).toBe('A');
      expect(await be.bootloader.bootedSlot()).toBe('A');
      expect(await be.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
      expect(await be.boot()).toBe('A');
    });

    it('commit during the trial makes the new slot the good one for every later boot', async () => {
      await be.boot();
      await be.bootloader.armTrial('B', 'A');
      expect(await be.boot()).toBe('B');
      await be.bootloader.commit('B');
      for (let i = 0; i < LIMIT + 2; i++) expect(await be.boot()).toBe('B');
      expect(await be.bootloader.read()).toMatchObject({ primary: 'B', good: 'B', trial: false });
    });

    it('commit records the anti-rollback floor in the same environment write; trials and boots keep it', async () => {
      await be.boot();
      expect((await be.bootloader.read()).securityFloor).toBeUndefined();
      await be.bootloader.armTrial('B', 'A');
      await be.boot();
      await be.bootloader.commit('B', { securityFloor: 7 });
      expect(await be.bootloader.read()).toMatchObject({ primary: 'B', trial: false, securityFloor: 7 });
      await be.bootloader.armTrial('A', 'B');
      for (let i = 0; i <= LIMIT; i++) await be.boot(); // through the trial and its fall-back
      await be.bootloader.abortTrial('B');
      expect(await be.bootloader.read()).toMatchObject({ primary: 'B', securityFloor: 7 });
    });

    it('abortTrial hands the next boot back to the good slot', async () => {
      await be.boot();
      await be.bootloader.armTrial('B', 'A');
      expect(await be.boot()).toBe('B');
      await be.bootloader.abortTrial('A');
      expect(await be.boot()).toBe('A');
      expect(await be.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
    });

    it('the agent updates and rolls back through this backend', async () => {
      const rig = await Rig.create();
      try {
        rig.backend = await make(join(rig.dev.dir));
        const next = makeImage(42, rig.factory.length);
        await rig.powerOn();
        rig.send(rig.offer(next, { version: '1.1.0' }));
        await rig.runToRest();
        expect(rig.agent!.record.committedSlot).toBe('B');
        expect(await rig.backend.bootloader.read()).toMatchObject({ primary: 'B', good: 'B', trial: false });

        rig.healthy = (slot) => (slot === 'A' ? 'app.service failed: exit code 3' : true);
        rig.send(rig.offer(makeImage(43, rig.factory.length), { version: '1.2.0', securityVersion: 3 }));
        await rig.runToRest();
        await rig.agent!.flushReports();
        expect(rig.told().at(-1)).toBe('rolled-back:FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED');
        expect(rig.agent!.bootedSlot).toBe('B');
        expect(await rig.backend.bootloader.read()).toMatchObject({ primary: 'B', good: 'B', trial: false });
        expect(sha(await rig.slotBytes('B', next.length))).toBe(sha(next));
      } finally {
        await rig.cleanup();
      }
    });
  });
}

describe.skipIf(lacks('grub'))('grubenv', () => {
  it('a grubenv write replaces the whole block by rename, never truncating the file in place (torn env)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-grubenv-'));
    try {
      const be = await grubBackend(dir);
      const envFile = join(dir, 'grubenv');
      const before = await readFile(envFile);
      // a reader holding the old file (as GRUB's blocklist does) sees the old block whole
      const held = await open(envFile, 'r');
      try {
        await be.bootloader.armTrial('B', 'A');
        const old = Buffer.alloc(1024);
        await held.read(old, 0, 1024, 0);
        expect(old.equals(before)).toBe(true);
      } finally {
        await held.close();
      }
      const listed = execFileSync('grub-editenv', [envFile, 'list']).toString();
      expect(listed).toContain('flotilla_slot=B');
      expect(listed).toContain('upgrade_available=1');
      expect((await stat(envFile)).size).toBe(1024);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a torn grubenv (no header, zeroed, cut mid-block) is rebuilt for the committed slot with no trial, and says so once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-grubenv-'));
    try {
      const be = await grubBackend(dir);
      const envFile = join(dir, 'grubenv');
      await be.bootloader.armTrial('B', 'A');
      await be.bootloader.commit('B'); // grubenv-committed names B
      const whole = await readFile(envFile);
      for (const torn of [Buffer.alloc(0), Buffer.alloc(1024), whole.subarray(0, 40)]) {
        await writeFile(envFile, torn);
        const state = await be.bootloader.read();
        expect(state).toMatchObject({ primary: 'B', good: 'B', trial: false, attempts: 0 });
        expect(state.repaired).toMatch(/not a whole environment block; rebuilt for committed slot B/);
        // GRUB's own tool reads the rebuilt block; a second read finds it whole and says nothing.
        expect(execFileSync('grub-editenv', [envFile, 'list']).toString()).toContain('flotilla_slot=B');
        expect((await be.bootloader.read()).repaired).toBeUndefined();
      }
      // Without a readable grubenv-committed, grub.cfg boots A: the rebuild says A too.
      await rm(join(dir, 'grubenv-committed'));
      await writeFile(envFile, Buffer.alloc(1024));
      expect(await be.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
      // A missing grubenv is a configuration fault, not a tear: still refused.
      await rm(envFile);
      await expect(be.bootloader.read()).rejects.toMatchObject({ code: 'FLOTILLA_ERR_AGENT_BOOTLOADER' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an agent powered on over a torn grubenv runs its committed slot, rebuilds the block and reports FLOTILLA_ERR_AGENT_BOOTENV_REPAIRED', async () => {
    const rig = await Rig.create();
    try {
      rig.backend = await grubBackend(rig.dev.dir);
      const next = makeImage(44, rig.factory.length);
      await rig.powerOn();
      rig.send(rig.offer(next, { version: '1.1.0' }));
      await rig.runToRest();
      expect(rig.agent!.record.committedSlot).toBe('B');
      await rig.agent!.stop();
      rig.agent = null;
      await writeFile(join(rig.dev.dir, 'grubenv'), Buffer.alloc(1024)); // GRUB's save_env cut short
      await rig.powerOn();
      await rig.agent!.flushReports();
      expect(rig.agent!.bootedSlot).toBe('B');
      const logs = rig.hub
        .events(rig.dev.deviceId)
        .filter((e) => e.kind === 'log')
        .map((e) => (e.reason as { code?: string } | undefined)?.code);
      expect(logs.filter((c) => c === 'FLOTILLA_ERR_AGENT_BOOTENV_REPAIRED')).toHaveLength(1);
      expect(await rig.backend.bootloader.read()).toMatchObject({ primary: 'B', good: 'B', trial: false });
    } finally {
      await rig.cleanup();
    }
  });

  it('a commit writes grubenv-committed (what grub.cfg boots when grubenv is torn); a trial does not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-grubenv-'));
    try {
      const be = await grubBackend(dir);
      const committed = join(dir, 'grubenv-committed');
      await be.bootloader.armTrial('B', 'A');
      await expect(stat(committed)).rejects.toThrow();
      await be.bootloader.commit('B');
      expect(execFileSync('grub-editenv', [committed, 'list']).toString()).toBe(
        'flotilla_committed_slot=B\n',
      );
      await be.bootloader.abortTrial('A');
      expect(execFileSync('grub-editenv', [committed, 'list']).toString()).toBe(
        'flotilla_committed_slot=A\n',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
