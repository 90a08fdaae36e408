import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { mutateImage, Rig } from './helpers.js';

/**
 * The anti-rollback floor lives in three places — the state record, its own small file
 * (`security-floor.json`, written atomically) and the bootloader environment (`flotilla_secver`,
 * written with the commit) — and the agent takes the maximum. Losing the state file must not
 * reopen a downgrade.
 */

let rig: Rig;
afterEach(async () => rig?.cleanup());

/** Factory 1.0.0 (securityVersion 1) → 1.1.0 (securityVersion 5) committed on slot B. */
async function updatedToFive(): Promise<Buffer> {
  rig = await Rig.create();
  const next = mutateImage(rig.factory, 3);
  await rig.powerOn();
  rig.send(rig.offer(next, { version: '1.1.0', securityVersion: 5 }));
  await rig.runToRest();
  expect(rig.agent!.record).toMatchObject({ committedSlot: 'B', securityVersion: 5 });
  await rig.agent!.stop();
  rig.agent = null;
  return next;
}

/** Offers an older release (securityVersion 3) over slot A and returns what the server heard. */
async function offerOlder(): Promise<string[]> {
  const older = mutateImage(rig.factory, 4);
  rig.send(rig.offer(older, { version: '1.0.5', securityVersion: 3, deploymentId: 'dep-older' }));
  await rig.agent!.settled();
  await rig.agent!.flushReports();
  return rig.told();
}

function floorLogs(): Record<string, unknown>[] {
  return rig.hub
    .events('dev-1')
    .filter((e) => e.kind === 'log' && (e.detail as { securityFloor?: number } | undefined)?.securityFloor)
    .map((e) => ({
      ...(e.detail as object),
      ...(e.reason ? { code: (e.reason as { code: string }).code } : {}),
    }));
}

describe('anti-rollback floor', () => {
  it('a corrupt state file does not reset the floor: a lower securityVersion is still refused (FLOTILLA_ERR_DOWNGRADE)', async () => {
    await updatedToFive();
    await writeFile(rig.dev.paths.state, '{"schemaVersion":1,"state":"Idl'); // torn write / bad sector
    await rig.powerOn();
    expect(rig.agent!.record.securityVersion).toBe(5);
    expect(await offerOlder()).toContain('offer-rejected:FLOTILLA_ERR_DOWNGRADE');
    expect(rig.agent!.record.state).toBe('Idle');
    expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
    // The server hears that the record was behind and where the floor came from.
    expect(floorLogs()).toContainEqual(
      expect.objectContaining({ securityFloor: 5, fromState: 1, fromFile: 5, fromBootloader: 5 }),
    );
  });

  it('with the state file and the floor file both lost, the bootloader environment still holds the floor', async () => {
    await updatedToFive();
    await rm(rig.dev.paths.state);
    await rm(rig.dev.paths.securityFloor);
    await rig.powerOn();
    expect(rig.agent!.record.securityVersion).toBe(5);
    expect(await offerOlder()).toContain('offer-rejected:FLOTILLA_ERR_DOWNGRADE');
    // The lost copy is written again.
    expect(JSON.parse(await readFile(rig.dev.paths.securityFloor, 'utf8'))).toEqual({
      schemaVersion: 1,
      securityVersion: 5,
    });
  });

  it('a corrupt floor file is reported (FLOTILLA_ERR_AGENT_STATE_CORRUPT) and rewritten from the other copies', async () => {
    await updatedToFive();
    await writeFile(rig.dev.paths.securityFloor, 'garbage');
    await rig.powerOn();
    await rig.agent!.flushReports();
    expect(floorLogs()).toContainEqual(
      expect.objectContaining({ code: 'FLOTILLA_ERR_AGENT_STATE_CORRUPT', securityFloor: 5, fromFile: null }),
    );
    expect(JSON.parse(await readFile(rig.dev.paths.securityFloor, 'utf8')).securityVersion).toBe(5);
    expect(await offerOlder()).toContain('offer-rejected:FLOTILLA_ERR_DOWNGRADE');
  });

  it('an equal or higher securityVersion is still accepted after the state file was lost', async () => {
    await updatedToFive();
    await rm(rig.dev.paths.state);
    await rig.powerOn();
    const again = mutateImage(rig.factory, 5);
    rig.send(rig.offer(again, { version: '1.2.0', securityVersion: 5, deploymentId: 'dep-same' }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.told().at(-1)).toBe('healthy');
    expect(rig.agent!.record).toMatchObject({ committedSlot: 'A', securityVersion: 5 });
  });
});
