import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDelta } from '@flotilla/delta';
import { generateKeyPair, signDocument } from '@flotilla/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { flipBits, makeImage, mutateImage, Rig, sha } from './helpers.js';

/** A real delta from `base` to `next`, made with the delta package in the device's directory. */
async function deltaBetween(rig: Rig, base: Buffer, next: Buffer): Promise<Buffer> {
  const dir = rig.dev.dir;
  await writeFile(join(dir, 'delta-base.img'), base);
  await writeFile(join(dir, 'delta-next.img'), next);
  await createDelta({
    basePath: join(dir, 'delta-base.img'),
    targetPath: join(dir, 'delta-next.img'),
    outPath: join(dir, 'd.fdelta'),
  });
  return readFile(join(dir, 'd.fdelta'));
}

/**
 * Each attack is refused with its own code, the active slot keeps its exact bytes, the device
 * stays committed on A, and the server hears about it.
 */

let rig: Rig;
afterEach(async () => rig?.cleanup());

async function expectUntouched(r: Rig) {
  expect(sha(await r.slotBytes('A', r.factory.length))).toBe(sha(r.factory));
  expect(r.agent!.record).toMatchObject({ state: 'Idle', committedSlot: 'A', securityVersion: 1 });
  expect(await r.dev.bootloader.read()).toMatchObject({ primary: 'A', good: 'A', trial: false });
}

async function runOffer(r: Rig, cmd: unknown) {
  await r.powerOn();
  r.send(cmd);
  await r.runToRest();
  await r.agent!.flushReports();
}

describe('attacks on the update channel', () => {
  it('refuses an unsigned offer (FLOTILLA_ERR_SIGNATURE_MISSING)', async () => {
    rig = await Rig.create();
    const cmd = rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' });
    (cmd.offer as { signatures: unknown[] }).signatures = [];
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_SIGNATURE_MISSING']);
    expect(rig.fetcher.requests).toEqual([]);
    await expectUntouched(rig);
  });

  it('refuses an offer signed by the release key instead of the delta (online) role (FLOTILLA_ERR_KEY_WRONG_ROLE)', async () => {
    rig = await Rig.create();
    await runOffer(
      rig,
      rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0', offerSigner: rig.keys.release }),
    );
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_KEY_WRONG_ROLE']);
    await expectUntouched(rig);
  });

  it('refuses a release signed by an unknown key (FLOTILLA_ERR_KEY_UNKNOWN)', async () => {
    rig = await Rig.create();
    await runOffer(
      rig,
      rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0', releaseSigner: generateKeyPair() }),
    );
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_KEY_UNKNOWN']);
    await expectUntouched(rig);
  });

  it('refuses an expired offer (freeze attack, FLOTILLA_ERR_EXPIRED)', async () => {
    rig = await Rig.create();
    await runOffer(
      rig,
      rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0', expiresMinutes: -5 }),
    );
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_EXPIRED']);
    await expectUntouched(rig);
  });

  it('refuses a downgrade below the committed securityVersion (FLOTILLA_ERR_DOWNGRADE)', async () => {
    rig = await Rig.create();
    await runOffer(
      rig,
      rig.offer(makeImage(5, rig.factory.length), { version: '0.9.0', securityVersion: 0 }),
    );
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_DOWNGRADE']);
    await expectUntouched(rig);
  });

  it('refuses a release for other hardware (FLOTILLA_ERR_INCOMPATIBLE_HARDWARE)', async () => {
    rig = await Rig.create();
    await runOffer(
      rig,
      rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0', compatible: ['other-board'] }),
    );
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_INCOMPATIBLE_HARDWARE']);
    await expectUntouched(rig);
  });

  it('refuses a tampered offer body (FLOTILLA_ERR_SIGNATURE_INVALID)', async () => {
    rig = await Rig.create();
    const cmd = rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' });
    (cmd.offer as { signed: { full: { url: string } } }).signed.full.url = 'mem://evil/image';
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_SIGNATURE_INVALID']);
    await expectUntouched(rig);
  });

  it('refuses a delta made for another base and takes the full image (FLOTILLA_ERR_DELTA_BASE_MISMATCH)', async () => {
    rig = await Rig.create();
    const other = makeImage(77, rig.factory.length);
    const next = mutateImage(rig.factory, 3);
    const deltaBytes = await deltaBetween(rig, other, next);
    const cmd = rig.offer(next, {
      version: '1.1.0',
      delta: { bytes: deltaBytes, from: other, fromVersion: '0.5.0' },
    });
    await runOffer(rig, cmd);
    const accepted = rig.hub.events('dev-1').find((e) => e.kind === 'offer-accepted')!;
    expect(accepted.reason).toMatchObject({ code: 'FLOTILLA_ERR_DELTA_BASE_MISMATCH' });
    expect(rig.fetcher.requests.map((r) => r.url)).not.toContain(`mem://artifacts/${sha(deltaBytes)}`);
    expect(sha(await rig.slotBytes('A', rig.factory.length))).toBe(sha(rig.factory));
    expect(rig.agent!.record.committedSlot).toBe('B');
    expect(sha(await rig.slotBytes('B', next.length))).toBe(sha(next));
  });

  it('refuses a tampered chunk before writing it (FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH)', async () => {
    rig = await Rig.create();
    const next = makeImage(5, rig.factory.length);
    const cmd = rig.offer(next, { version: '1.1.0' });
    const bad = Buffer.from(next);
    flipBits(bad, 3 * 4096 + 17, 1);
    rig.fetcher.put(`mem://artifacts/${sha(next)}`, bad);
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH']);
    // Only the three verified chunks before the tampered one reached slot B.
    const b = await rig.slotBytes('B', next.length);
    expect(b.subarray(0, 3 * 4096).equals(next.subarray(0, 3 * 4096))).toBe(true);
    expect(b.subarray(3 * 4096, 4 * 4096).equals(bad.subarray(3 * 4096, 4 * 4096))).toBe(false);
    await expectUntouched(rig);
  });

  it('refuses an oversized download (endless data, FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE)', async () => {
    rig = await Rig.create();
    const next = makeImage(5, rig.factory.length);
    const cmd = rig.offer(next, { version: '1.1.0' });
    rig.fetcher.put(`mem://artifacts/${sha(next)}`, Buffer.concat([next, Buffer.alloc(1 << 20)]));
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE']);
    await expectUntouched(rig);
  });

  it('refuses a delta whose bytes do not match the signed descriptor (FLOTILLA_ERR_AGENT_DELTA_HASH_MISMATCH)', async () => {
    rig = await Rig.create();
    const next = mutateImage(rig.factory, 3);
    const deltaBytes = await deltaBetween(rig, rig.factory, next);
    const cmd = rig.offer(next, {
      version: '1.1.0',
      delta: { bytes: deltaBytes, from: rig.factory, fromVersion: '1.0.0' },
    });
    const evil = Buffer.from(deltaBytes);
    flipBits(evil, evil.length - 10, 0x40);
    rig.fetcher.put(`mem://artifacts/${sha(deltaBytes)}`, evil);
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_DELTA_HASH_MISMATCH']);
    await expectUntouched(rig);
  });

  it('refuses offers addressed to another device (FLOTILLA_ERR_WRONG_DOCUMENT_TYPE)', async () => {
    rig = await Rig.create();
    const cmd = rig.offer(makeImage(5, rig.factory.length), { version: '1.1.0' });
    const offer = cmd.offer as { signed: { deviceId: string } };
    offer.signed.deviceId = 'dev-2';
    cmd.offer = signDocument(offer.signed, [rig.keys.delta]);
    await runOffer(rig, cmd);
    expect(rig.told()).toEqual(['offer-rejected:FLOTILLA_ERR_WRONG_DOCUMENT_TYPE']);
    await expectUntouched(rig);
  });
});

describe('delta updates', () => {
  it('applies a delta streaming base=active slot into the inactive slot, chunk-verified', async () => {
    rig = await Rig.create();
    const next = mutateImage(rig.factory, 11);
    const deltaBytes = await deltaBetween(rig, rig.factory, next);
    expect(deltaBytes.length).toBeLessThan(next.length / 4);
    await runOffer(
      rig,
      rig.offer(next, {
        version: '1.1.0',
        delta: { bytes: deltaBytes, from: rig.factory, fromVersion: '1.0.0' },
      }),
    );
    expect(rig.told()).toEqual(['offer-accepted', 'downloaded', 'installed', 'rebooting', 'healthy']);
    expect(rig.fetcher.requests.map((r) => r.url)).toEqual([`mem://artifacts/${sha(deltaBytes)}`]);
    expect(sha(await rig.slotBytes('B', next.length))).toBe(sha(next));
    expect(sha(await rig.slotBytes('A', rig.factory.length))).toBe(sha(rig.factory));
    expect(rig.agent!.record).toMatchObject({ committedSlot: 'B', securityVersion: 2 });
  });
});

describe('test fixtures', () => {
  it("the tests' fast signer makes exactly protocol's signatures", async () => {
    const { makeKeys, signFast } = await import('./helpers.js');
    const keys = makeKeys();
    const doc = { _type: 'x', n: 1, s: 'ü' };
    expect(signFast(doc, [keys.release, keys.delta])).toEqual(signDocument(doc, [keys.release, keys.delta]));
  });
});
