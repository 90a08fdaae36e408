import { describe, expect, it } from 'vitest';
import { rollOut, smallWorld, stuckDevices } from './helpers.js';

describe('power cuts during a rollout', () => {
  it('leaves every device committed on the new release or back on the old one, none stuck', async () => {
    const world = await smallWorld(20, [
      {
        name: 'power-cut',
        share: 0.1,
        powerCut: {
          inStates: ['Downloading', 'Installing', 'Installed', 'Rebooting', 'Verifying'],
          delayMs: [0, 300],
          offMs: 200,
        },
      },
    ]);
    try {
      const cutDevices = world.fleet.devices.filter((d) => d.fault?.name === 'power-cut');
      expect(cutDevices.length).toBe(2);
      const { id, view } = await rollOut(world, { retries: { failed: 2, rolledBack: 1, timedOut: 1 } });
      await world.fleet
        .waitFor('devices idle', () => stuckDevices(world).length === 0, 30_000)
        .catch(() => undefined);
      expect(stuckDevices(world)).toEqual([]);
      for (const d of cutDevices) expect(d.counters.powerCuts).toBe(1);
      const deployments = await world.server.deployments(id);
      expect(deployments.length).toBe(20);
      for (const dep of deployments) expect(['healthy', 'failed', 'rolled-back']).toContain(dep.state);
      // Whatever the outcome, the device runs a complete release and the server knows which.
      const versions = await world.server.deviceVersions();
      for (const d of world.fleet.devices) {
        expect(['1.0.0', '1.1.0']).toContain(d.current?.release);
        expect(versions.get(d.id)).toBe(d.current?.release);
      }
      expect(view.status).toBe('completed');
      expect(view.totals.healthy).toBe(deployments.filter((x) => x.state === 'healthy').length);
    } finally {
      await world.close();
    }
  }, 240_000);
});
