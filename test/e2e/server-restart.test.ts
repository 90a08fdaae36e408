import { sleep } from '@flotilla/fleet-simulator';
import { describe, expect, it } from 'vitest';
import { rollOut, smallWorld, stuckDevices } from './helpers.js';

describe('server killed mid-rollout', () => {
  it('resumes the rollout after a restart and every device ends healthy', async () => {
    const world = await smallWorld(10);
    try {
      const sim = world.simServer!;
      let crashedWith = -1;
      // An offer in flight when the broker died is lost with it; the server re-sends it when the
      // device is back. No retries, and a device timeout far beyond the test's own limit: a lost
      // offer fails the test instead of being healed by a timeout.
      const { view } = await rollOut(
        world,
        { maxConcurrent: 3, deviceTimeoutSeconds: 3600, retries: { timedOut: 0 } },
        async (id) => {
          await world.fleet.waitFor(
            'first devices healthy',
            async () => (await world.server.rollout(id)).totals.healthy >= 2,
            60_000,
          );
          crashedWith = (await world.server.rollout(id)).totals.healthy;
          await sim.crash();
          await sleep(1500);
          await sim.restart();
        },
      );
      expect(crashedWith).toBeLessThan(10);
      expect(view.status).toBe('completed');
      expect(view.totals.healthy).toBe(10);
      expect(world.fleet.versions().get('1.1.0')).toBe(10);
      await world.fleet.waitFor('devices idle', () => stuckDevices(world).length === 0, 20_000);
    } finally {
      await world.close();
    }
  }, 240_000);
});
