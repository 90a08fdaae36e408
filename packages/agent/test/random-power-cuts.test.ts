import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { PowerCut } from '../src/testing.js';
import { FAST_LIMITS, flipBits, makeImage, mutateImage, prng, Rig, sha } from './helpers.js';

/**
 * Hundreds of updates, each with a power cut at a random I/O instant (seeded, reproducible):
 * whatever happened, the device ends Idle on a committed slot that holds exactly the image the
 * agent believes it holds, with no trial armed, and the server heard exactly one outcome.
 * FLOTILLA_LONG=1 runs ten times as many.
 */
const UPDATES = process.env.FLOTILLA_LONG ? 2000 : 200;
const SEED = Number(process.env.FLOTILLA_SEED ?? 20260601);

let rig: Rig;
afterEach(async () => rig?.cleanup());

describe('random power cuts', () => {
  it(`${UPDATES} updates each cut at a random instant all end on a committed bootable slot`, async () => {
    const random = prng(SEED);
    rig = await Rig.create({
      imageSize: 16 * 1024,
      // tmpfs: the power cuts are simulated, so real fsyncs only cost time here.
      parent: existsSync('/dev/shm') ? '/dev/shm' : undefined,
      // Same health logic (retries until the deadline), shorter waits: an unhealthy slot is
      // declared so after 30 ms instead of 200.
      config: {
        limits: { ...FAST_LIMITS, health: { deadlineMs: 30, retryIntervalMs: 5, checkTimeoutMs: 30 } },
      },
    });
    await rig.powerOn();
    let current = rig.factory;
    let sv = 1;
    const outcomes = { healthy: 0, 'rolled-back': 0, failed: 0 };
    for (let u = 0; u < UPDATES; u++) {
      const kind = random() < 0.7 ? 'healthy' : random() < 0.7 ? 'unhealthy' : 'tampered';
      const next = u % 3 === 0 ? makeImage(1000 + u, current.length) : mutateImage(current, 1000 + u);
      const deploymentId = `dep-${u}`;
      const cmd = rig.offer(next, { version: `2.0.${u}`, securityVersion: sv + 1, deploymentId });
      const target = rig.agent!.bootedSlot === 'A' ? 'B' : 'A';
      rig.healthy = (slot) =>
        kind === 'unhealthy' && slot === target ? 'app.service failed: exit code 3' : true;
      if (kind === 'tampered') {
        const bad = Buffer.from(next);
        flipBits(bad, Math.floor(random() * bad.length), 0x01);
        rig.fetcher.put(`mem://artifacts/${sha(next)}`, bad);
      }
      // The cut plan arms the *current* agent: a point count from its next I/O on.
      const cut = new PowerCut({ atCount: 1 + Math.floor(random() * 60) });
      await rig.agent!.stop();
      rig.agent = null;
      await rig.powerOn({ cut, skipBootloader: true });
      rig.send(cmd);
      await rig.runToRest(20);
      await rig.agent!.flushReports();
      if (!rig.hub.events('dev-1').some((e) => e.deploymentId === deploymentId)) {
        // The cut came while the offer was being taken in (before Offered was persisted): like
        // the server after its per-device timeout, offer it again.
        expect(rig.chain.at(-1)).toBe('⚡');
        rig.send({ ...cmd, commandId: `${cmd.commandId}-again` });
        await rig.runToRest(20);
        await rig.agent!.flushReports();
      }

      const a = rig.agent!;
      const rec = a.record;
      const boot = await rig.dev.bootloader.read();
      expect(rec.state).toBe('Idle');
      expect(boot).toMatchObject({ primary: rec.committedSlot, good: rec.committedSlot, trial: false });
      expect(a.bootedSlot).toBe(rec.committedSlot);
      const content = rec.slots[rec.committedSlot]!;
      expect(sha(await rig.slotBytes(rec.committedSlot, current.length))).toBe(content.imageSha256);

      const terminal = rig.hub
        .events('dev-1')
        .filter(
          (e) =>
            e.deploymentId === deploymentId &&
            ['healthy', 'rolled-back', 'failed'].includes(e.kind as string),
        );
      expect(terminal).toHaveLength(1);
      const outcome = terminal[0]!.kind as keyof typeof outcomes;
      outcomes[outcome]++;
      if (outcome === 'healthy') {
        expect(content.imageSha256).toBe(sha(next));
        expect(kind).toBe('healthy');
        current = next;
        sv++;
      } else {
        expect(content.imageSha256).toBe(sha(current));
      }
      expect(rec.securityVersion).toBe(sv);
    }
    // The campaign exercised every outcome, not one path over and over.
    expect(outcomes.healthy).toBeGreaterThan(UPDATES / 3);
    expect(outcomes['rolled-back']).toBeGreaterThan(0);
    expect(outcomes.failed).toBeGreaterThan(0);
  }, 600_000);
});
