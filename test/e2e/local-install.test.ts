import { describe, expect, it } from 'vitest';
import { smallWorld } from './helpers.js';

describe("field engineer's local install", () => {
  it('installs a signed recovery bundle offline; the device rejoins and reports it', async () => {
    const world = await smallWorld(3, [{ name: 'bench-device', devices: ['sim-0001'], mqttNetwork: {} }]);
    try {
      const device = world.fleet.byId.get('sim-0001')!;
      const link = world.fleet.proxies.get('bench-device')!.mqtt!;
      link.blackout(true); // on the bench: no network
      await world.fleet.waitFor(
        'server sees it offline',
        async () => (await world.server.onlineCount()) === 2,
        30_000,
      );

      const usb = await world.bundle('1.0.1-recovery');
      await device.installLocal(usb);
      await world.fleet.waitFor(
        'device booted and committed the recovery image',
        () => device.current?.release === '1.0.1-recovery' && device.agentState === 'Idle',
        60_000,
      );
      expect(device.counters.reboots).toBeGreaterThanOrEqual(1);

      link.blackout(false); // back in the field
      await world.fleet.waitFor(
        'server sees the recovery version',
        async () => (await world.server.deviceVersions()).get('sim-0001') === '1.0.1-recovery',
        60_000,
      );
      expect((await world.server.deviceVersions()).get('sim-0002')).toBe('1.0.0');
    } finally {
      await world.close();
    }
  }, 240_000);
});
