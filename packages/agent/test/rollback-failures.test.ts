import { afterEach, describe, expect, it } from 'vitest';
import { AgentError, type Bootloader } from '../src/index.js';
import { mutateImage, Rig } from './helpers.js';

/**
 * A bootloader whose writes fail on demand (a worn-out env partition, a locked MTD), wrapped
 * around the device's real file bootloader; power-on still runs the real boot logic.
 */
function failingOnDemand(inner: Bootloader, fail: { commit: boolean; abort: boolean }): Bootloader {
  const refuse = (what: string) => {
    throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `${what}: environment write failed (injected)`);
  };
  return {
    kind: inner.kind,
    read: () => inner.read(),
    bootedSlot: () => inner.bootedSlot(),
    armTrial: (s, g) => inner.armTrial(s, g),
    commit: async (s, o) => (fail.commit ? refuse('commit') : inner.commit(s, o)),
    abortTrial: async (g) => (fail.abort ? refuse('abortTrial') : inner.abortTrial(g)),
  };
}

let rig: Rig;
afterEach(async () => rig?.cleanup());

describe('rollback when the bootloader fails', () => {
  it('a failed commit and a failed hand-back are reported as failed (FLOTILLA_ERR_AGENT_ROLLBACK_PENDING), not rolled-back; the armed trial falls back', async () => {
    rig = await Rig.create({ bootlimit: 3 });
    const fail = { commit: true, abort: true };
    rig.backend = { bootloader: failingOnDemand(rig.dev.bootloader, fail), boot: () => rig.dev.powerOn() };
    const next = mutateImage(rig.factory, 21);
    await rig.powerOn();
    rig.send(rig.offer(next, { version: '1.1.0' }));
    await rig.runToRest();
    await rig.agent!.flushReports();

    expect(rig.chain).toEqual([
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed', // the commit fails…
      'RollingBack', // …and so does the hand-back to slot A
      'Failed', // reported from slot B; the trial stays armed; reboot
      '⏻',
      '↻Failed', // boot 2 of the trial
      '⏻',
      '↻Failed', // boot 3 of the trial
      '⏻',
      '↻Failed', // past bootlimit: the bootloader fell back to A by itself
      'Idle',
    ]);
    expect(rig.told()).toEqual([
      'offer-accepted',
      'downloaded',
      'installed',
      'rebooting',
      'failed:FLOTILLA_ERR_AGENT_ROLLBACK_PENDING',
    ]);
    const failed = rig.hub.events('dev-1').find((e) => e.kind === 'failed')!;
    // Told from where it was true: on the new slot, with A still the committed one.
    expect(failed.detail).toMatchObject({ slot: 'B', committedSlot: 'A' });
    expect((failed.reason as { message: string }).message).toMatch(/hand-back to slot A failed/);
    expect(rig.hub.events('dev-1').some((e) => e.kind === 'rolled-back')).toBe(false);

    expect(await rig.dev.bootloader.env()).toMatchObject({
      flotilla_slot: 'A',
      flotilla_good_slot: 'A',
      upgrade_available: 0,
      bootcount: 4,
    });
    expect(rig.agent!.bootedSlot).toBe('A');
    expect(rig.agent!.record).toMatchObject({ committedSlot: 'A', securityVersion: 1 });
    expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
  });

  it('while stranded on the uncommitted slot, a new offer is refused (it would overwrite the good slot)', async () => {
    rig = await Rig.create({ bootlimit: 3 });
    const fail = { commit: true, abort: true };
    rig.backend = { bootloader: failingOnDemand(rig.dev.bootloader, fail), boot: () => rig.dev.powerOn() };
    rig.config.limits = { ...rig.config.limits, maxStateRuns: 1 }; // the loop breaker ends Failed on B
    await rig.powerOn();
    rig.send(rig.offer(mutateImage(rig.factory, 22), { version: '1.1.0' }));
    await rig.runToRest();
    expect(rig.agent!.bootedSlot).toBe('B');
    expect(rig.agent!.record).toMatchObject({ state: 'Idle', committedSlot: 'A' });
    rig.send(rig.offer(mutateImage(rig.factory, 23), { version: '1.2.0', deploymentId: 'dep-next' }));
    await rig.agent!.settled();
    await rig.agent!.flushReports();
    expect(rig.told().at(-1)).toBe('offer-rejected:FLOTILLA_ERR_AGENT_ROLLBACK_PENDING');
    expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
  });

  it('a failed commit alone rolls back to the old slot and reports rolled-back with the bootloader error', async () => {
    rig = await Rig.create({ bootlimit: 3 });
    const fail = { commit: true, abort: false };
    rig.backend = { bootloader: failingOnDemand(rig.dev.bootloader, fail), boot: () => rig.dev.powerOn() };
    await rig.powerOn();
    rig.send(rig.offer(mutateImage(rig.factory, 24), { version: '1.1.0' }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.chain.slice(8)).toEqual([
      'Committed',
      'RollingBack',
      '⏻',
      '↻RollingBack',
      'RolledBack',
      'Idle',
    ]);
    expect(rig.told().at(-1)).toBe('rolled-back:FLOTILLA_ERR_AGENT_BOOTLOADER');
    expect(rig.agent!.bootedSlot).toBe('A');
    expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
  });
});
