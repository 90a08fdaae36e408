import { sleep } from '@flotilla/fleet-simulator';
import { describe, expect, it } from 'vitest';
import { rollOut, smallWorld, stuckDevices } from './helpers.js';
import { type ServerProcess, spawnServerProcess } from './server-process.js';

describe('server killed mid-rollout', () => {
  it('resumes the rollout after a SIGKILL of the server process and every device ends healthy', async () => {
    let server: ServerProcess | null = null;
    // Downloads back off as on a real device (1 s doubling to 10 s, unscaled): a device outlasts
    // a server restart of tens of seconds. At the world's time scale it would give up after ~3 s,
    // shorter than a server process takes to come back on a busy machine.
    const world = await smallWorld(
      10,
      [],
      7,
      async (x) => {
        server = await spawnServerProcess({ ...x, rolloutTickMs: 1000 });
        return server;
      },
      { download: { backoffBaseMs: 1000, backoffMaxMs: 10_000 } },
    );
    try {
      const killed = server as unknown as ServerProcess;
      let killedWith = -1;
      // An offer or report in flight when the process died is lost with it; the server re-sends
      // offers when the device is back, the device re-sends unacknowledged reports. No retries,
      // and a device timeout far beyond the test's own limit: anything lost for good fails the
      // test instead of being healed by a timeout.
      const { view } = await rollOut(
        world,
        // A server process restart costs seconds of CPU: on a busy 2-core machine the whole
        // rollout took 131 s, so the budget is wide (a lost report still never ends it).
        { maxConcurrent: 3, deviceTimeoutSeconds: 3600, retries: { timedOut: 0 }, timeoutMs: 240_000 },
        async (id) => {
          await world.fleet.waitFor(
            'first devices healthy',
            async () => (await world.server.rollout(id)).totals.healthy >= 2,
            60_000,
          );
          killedWith = (await world.server.rollout(id)).totals.healthy;
          await killed.kill();
          await sleep(1500);
          await killed.restart();
        },
      );
      expect(killedWith).toBeLessThan(10);
      expect(view.status).toBe('completed');
      expect(view.totals.healthy).toBe(10);
      expect(world.fleet.versions().get('1.1.0')).toBe(10);
      await world.fleet.waitFor('devices idle', () => stuckDevices(world).length === 0, 20_000);
    } finally {
      await world.close();
    }
  }, 330_000);
});
