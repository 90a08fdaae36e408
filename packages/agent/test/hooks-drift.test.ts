import { spawn } from 'node:child_process';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirHookRunner } from '../src/hooks/hooks.js';
import { FlockUpdateLock, PidFileUpdateLock } from '../src/hooks/update-lock.js';
import { MemoryUpdateLock } from '../src/testing.js';
import { makeImage, Rig } from './helpers.js';

let rig: Rig;
afterEach(async () => rig?.cleanup());

async function hook(dir: string, point: string, name: string, script: string) {
  await mkdir(join(dir, point), { recursive: true });
  const p = join(dir, point, name);
  await writeFile(p, `#!/bin/sh\n${script}\n`);
  await chmod(p, 0o755);
}

describe('hooks', () => {
  it('a before-install hook vetoes the update (exit 1); its output reaches the server', async () => {
    rig = await Rig.create();
    const dir = join(rig.dev.dir, 'hooks');
    await hook(dir, 'before-install', '10-battery', 'echo "battery at 12%, need 30%" >&2; exit 1');
    rig.hooks = new DirHookRunner(dir, { timeoutMs: 10_000, maxOutputBytes: 10 * 1024 });
    await rig.powerOn();
    rig.send(rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.told()).toEqual(['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_HOOK_VETO']);
    const out = rig.hub.events('dev-1').find((e) => e.kind === 'hook-output')!;
    expect(out.detail).toMatchObject({
      point: 'before-install',
      hook: '10-battery',
      exitCode: 1,
      output: 'battery at 12%, need 30%\n',
    });
    expect(rig.agent!.record.committedSlot).toBe('A');
  });

  it('exit 21 asks to retry later, bounded: then the update goes on', async () => {
    rig = await Rig.create();
    const dir = join(rig.dev.dir, 'hooks');
    const flag = join(rig.dev.dir, 'tries');
    await hook(
      dir,
      'before-reboot',
      '50-wait',
      `echo x >> ${flag}; [ $(wc -l < ${flag}) -ge 2 ] && exit 0; exit 21`,
    );
    rig.hooks = new DirHookRunner(dir, { timeoutMs: 10_000, maxOutputBytes: 10 * 1024 });
    await rig.powerOn();
    rig.send(rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    await rig.runToRest();
    expect(rig.agent!.record.committedSlot).toBe('B');
    const outs = rig.hub.events('dev-1').filter((e) => e.kind === 'hook-output');
    expect(outs.map((e) => (e.detail as { exitCode: number }).exitCode)).toEqual([21, 0]);
  });

  it('keeps at most 10 KiB of hook output, sent in ordered parts', async () => {
    rig = await Rig.create();
    const dir = join(rig.dev.dir, 'hooks');
    await hook(
      dir,
      'after-commit',
      '90-chatty',
      'i=0; while [ $i -lt 2000 ]; do echo "line $i of chatter"; i=$((i+1)); done',
    );
    rig.hooks = new DirHookRunner(dir, { timeoutMs: 10_000, maxOutputBytes: 10 * 1024 });
    await rig.powerOn();
    rig.send(rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    const parts = rig.hub
      .events('dev-1')
      .filter((e) => e.kind === 'hook-output')
      .map((e) => e.detail as { output: string; part: number; parts: number; truncated: boolean });
    expect(parts.map((p) => p.part)).toEqual([1, 2, 3]);
    const text = parts.map((p) => p.output).join('');
    expect(text.length).toBeLessThanOrEqual(10 * 1024);
    expect(text.endsWith('line 1999 of chatter\n')).toBe(true);
    expect(parts[0]!.truncated).toBe(true);
  });
});

describe('update lock', () => {
  it('defers the reboot while an application holds the lock, then reboots', async () => {
    rig = await Rig.create();
    const lock = new MemoryUpdateLock();
    lock.isHeld = true;
    rig.updateLock = lock;
    await rig.powerOn();
    rig.send(rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    const released = (async () => {
      while (rig.agent?.record.state !== 'Rebooting') await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 50));
      expect(rig.chain).not.toContain('⏻');
      lock.isHeld = false;
    })();
    await rig.runToRest();
    await released;
    expect(rig.chain).toContain('⏻');
    expect(rig.agent!.record.committedSlot).toBe('B');
  });

  it('gives up after the bounded wait (FLOTILLA_ERR_AGENT_UPDATE_LOCKED) and disarms the trial', async () => {
    rig = await Rig.create({ config: { limits: { updateLock: { pollMs: 5, maxWaitMs: 50 } } } });
    const lock = new MemoryUpdateLock();
    lock.isHeld = true;
    rig.updateLock = lock;
    await rig.powerOn();
    rig.send(rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.told().at(-1)).toBe('failed:FLOTILLA_ERR_AGENT_UPDATE_LOCKED');
    expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'A', trial: false });
  });

  it('probes a real flock(1) lock and a pid file', async () => {
    rig = await Rig.create();
    const path = join(rig.dev.dir, 'update.lock');
    const l = new FlockUpdateLock(path);
    expect(await l.held()).toBe(false);
    // Its own process group: the sleep child inherits the lock fd and must die with it.
    const holder = spawn('flock', [path, 'sleep', '30'], { stdio: 'ignore', detached: true });
    try {
      for (let i = 0; i < 100 && !(await l.held()); i++) await new Promise((r) => setTimeout(r, 20));
      expect(await l.held()).toBe(true);
    } finally {
      process.kill(-holder.pid!, 'SIGKILL');
    }
    await new Promise((r) => holder.once('exit', r));
    for (let i = 0; i < 100 && (await l.held()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await l.held()).toBe(false);
    const pidFile = join(rig.dev.dir, 'app.pid');
    await writeFile(pidFile, `${process.pid}\n`);
    expect(await new PidFileUpdateLock(pidFile).held()).toBe(true);
    await writeFile(pidFile, '999999999\n');
    expect(await new PidFileUpdateLock(pidFile).held()).toBe(false);
  });
});

describe('drift', () => {
  it('reports the first chunk of the active slot that differs from its release manifest', async () => {
    rig = await Rig.create();
    await rig.powerOn();
    expect(await rig.agent!.checkDrift()).toEqual({ drifted: false, firstBadChunk: null });
    const fh = await open(rig.dev.paths.slotA, 'r+');
    await fh.write(Buffer.from('tampered'), 0, 8, 5 * 4096 + 10);
    await fh.close();
    expect(await rig.agent!.checkDrift()).toEqual({ drifted: true, firstBadChunk: 5 });
    await rig.agent!.flushReports();
    const drift = rig.hub.events('dev-1').find((e) => e.kind === 'drift')!;
    expect(drift.detail).toMatchObject({ slot: 'A', firstBadChunk: 5, badChunks: 1, chunkSize: 4096 });
  });
});
