import { sleep } from '@flotilla/fleet-simulator';
import { describe, expect, it } from 'vitest';
import { rollOut, smallWorld, stuckDevices } from './helpers.js';

describe('broker connection dropped for a while', () => {
  it('loses no report: the rollout completes once devices reconnect', async () => {
    // Every device reaches the broker through one loopback proxy that the test can black out.
    const world = await smallWorld(10, [{ name: 'mqtt-link', share: 1, mqttNetwork: {} }]);
    try {
      const link = world.fleet.proxies.get('mqtt-link')?.mqtt;
      expect(link).toBeDefined();
      const { view } = await rollOut(world, { maxConcurrent: 10 }, async (id) => {
        await world.fleet.waitFor(
          'devices busy',
          async () => (await world.server.rollout(id)).totals.inFlight >= 3,
          60_000,
          50,
        );
        link!.blackout(true);
        await world.fleet.waitFor(
          'server sees devices offline',
          async () => (await world.server.onlineCount()) === 0,
          30_000,
        );
        await sleep(3000);
        link!.blackout(false);
      });
      expect(link!.stats.refused).toBeGreaterThan(0);
      expect(view.status).toBe('completed');
      expect(view.totals.healthy).toBe(10);
      await world.fleet.waitFor('devices idle', () => stuckDevices(world).length === 0, 20_000);
      const versions = await world.server.deviceVersions();
      expect([...versions.values()].every((v) => v === '1.1.0')).toBe(true);
    } finally {
      await world.close();
    }
  }, 240_000);
});
