import type { DeviceEventMessage, InventoryMessage } from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';
import { FleetStats } from '../../src/store/fleet-stats.js';
import { addDevice, addRelease, BIG_SIZE, type OpenStore, sha, stateReport } from './fixtures.js';

// The store contract for devices and their events beyond the search: what a report leaves in the
// row (numbers, flags, JSON), the fleet counts, and the event timeline's pages.

const inventory: InventoryMessage = {
  schemaVersion: 1,
  type: 'inventory',
  ts: '2026-01-01T00:00:09Z',
  hardware: 'rpi4',
  bootloader: 'uboot',
  agentVersion: 'TEST-ONLY 0.1',
  slots: [
    { name: 'A', size: BIG_SIZE, version: '1.0.0', imageSha256: sha('a1') },
    { name: 'B', size: BIG_SIZE, version: null, imageSha256: null },
  ],
  tags: ['lab'],
};

const event = (eventId: string, deploymentId: string | null): DeviceEventMessage => ({
  schemaVersion: 1,
  type: 'event',
  eventId,
  seq: 1,
  ts: '2026-01-01T00:00:00Z',
  kind: 'download-progress',
  deploymentId,
  progress: { done: 1, total: 2, bytesDownloaded: BIG_SIZE },
});

export function deviceCases(open: OpenStore): void {
  describe('devices', () => {
    it('keeps the highest security version reported and reads the report back: JSON, NULLs, online as a boolean', async () => {
      const { store: s } = await open();
      await addDevice(s, 'd1');
      const lastError = { code: 'FLOTILLA_ERR_TEST', message: 'TEST-ONLY “disk” \\ full' };
      await s.devices.applyState(
        'd1',
        stateReport(1, { securityVersion: 5, lastError, agentState: 'Failed' }),
        10,
      );
      expect(await s.devices.get('d1')).toMatchObject({
        securityVersion: 5,
        lastError,
        online: true,
        lastSeen: 10,
      });
      await s.devices.applyState('d1', stateReport(2, { securityVersion: 3 }), 11); // a downgrade never lowers it
      await s.devices.applyInventory('d1', inventory, 12);
      const d = (await s.devices.get('d1'))!;
      expect(d).toMatchObject({
        securityVersion: 5,
        lastError: null,
        inventory,
        hardware: 'rpi4',
        stateSeq: 2,
        stateTs: Date.parse('2026-01-01T00:00:02Z'),
        deploymentId: null,
      });
      expect(d.online).toBe(true);
      await s.devices.setOnline('d1', false, 13);
      expect((await s.devices.get('d1'))?.online).toBe(false);
      expect((await s.devices.allAccepted()).map((a) => [a.id, a.online, a.tags])).toEqual([
        ['d1', false, []],
      ]);
    });

    it('refuses a report with a NUL character in its text on every engine, leaving the device as it was', async () => {
      const { store: s } = await open();
      await addDevice(s, 'd1');
      await s.devices.applyState('d1', stateReport(1, { deploymentId: 'dep_1' }), 10);
      await expect(
        s.devices.applyState('d1', stateReport(2, { deploymentId: 'dep\u00002' }), 11),
      ).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_STORE_TEXT',
        status: 400,
      });
      expect(await s.devices.get('d1')).toMatchObject({ stateSeq: 1, deploymentId: 'dep_1', updated: 10 });
    });

    it('counts devices by status and by version (a device that never reported too)', async () => {
      const { store: s } = await open();
      for (const id of ['d1', 'd2', 'd3']) await addDevice(s, id);
      await s.devices.insert({ id: 'p1', publicKey: 'cd'.repeat(32), status: 'pending', now: 1 });
      await s.devices.applyState('d1', stateReport(1), 2);
      await s.devices.applyState('d2', stateReport(1, { imageSha256: sha('a2') }), 2);
      expect(await s.devices.countsByStatus()).toEqual({ accepted: 3, pending: 1 });
      expect(await s.devices.countByStatus('rejected')).toBe(0);
      const byVersion = await s.devices.countsByVersion();
      expect(byVersion.sort((a, b) => String(a.version).localeCompare(String(b.version)))).toEqual([
        { version: '1.0.0', count: 2 },
        { version: null, count: 1 },
      ]);
      expect((await s.devices.runningImages()).sort()).toEqual([sha('a1'), sha('a2')]);
    });

    it('lists accepted keys most recently changed first, and MQTT credentials of accepted devices in id order', async () => {
      const { store: s } = await open();
      await s.devices.insert({ id: 'd-b', publicKey: 'bb'.repeat(32), status: 'accepted', now: 3 });
      await s.devices.insert({ id: 'd-a', publicKey: 'aa'.repeat(32), status: 'accepted', now: 1 });
      await s.devices.insert({ id: 'd-c', publicKey: 'cc'.repeat(32), status: 'pending', now: 5 });
      expect(await s.devices.acceptedKeys(10)).toEqual(['bb'.repeat(32), 'aa'.repeat(32)]);
      await s.devices.setMqttSecretHash('d-b', 'hash-b', 6);
      await s.devices.setMqttSecretHash('d-a', 'hash-a', 7);
      await s.devices.setMqttSecretHash('d-c', 'hash-c', 8);
      expect(await s.devices.mqttCredentials()).toEqual([
        { id: 'd-a', hash: 'hash-a' },
        { id: 'd-b', hash: 'hash-b' },
      ]);
      await s.devices.setMqttSecretHash('d-a', null, 9);
      expect((await s.devices.mqttCredentials()).map((c) => c.id)).toEqual(['d-b']);
      expect(await s.devices.authInfo('d-c')).toEqual({ publicKey: 'cc'.repeat(32), status: 'pending' });
    });

    it('searches an id prefix byte by byte: case counts, and ids with any allowed character sort as on SQLite', async () => {
      const { store: s } = await open();
      for (const id of ['lab-1', 'lab_2', 'labZ', 'Lab-3', 'lab.4', 'la', 'lab-10']) await addDevice(s, id);
      const page = await s.devices.list({ q: 'lab', limit: 3, offset: 0 });
      expect(page.total).toBe(5);
      expect(page.items.map((d) => d.id)).toEqual(['lab-1', 'lab-10', 'lab.4']);
      const rest = await s.devices.list({ q: 'lab', after: page.next!, limit: 10, offset: 0 });
      expect(rest.items.map((d) => d.id)).toEqual(['labZ', 'lab_2']);
      expect((await s.devices.list({ limit: 2, offset: 0 })).items.map((d) => d.id)).toEqual(['Lab-3', 'la']);
    });
  });

  describe('fleet stats', () => {
    it('counts the accepted fleet by version, agent state and hardware, a device that never reported first on a tie', async () => {
      const { store: s } = await open();
      await s.devices.insert({
        id: 'd1',
        publicKey: 'ab'.repeat(32),
        status: 'accepted',
        hardware: 'rpi4',
        now: 1,
      });
      await s.devices.insert({ id: 'd2', publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
      await s.devices.insert({
        id: 'd3',
        publicKey: 'ab'.repeat(32),
        status: 'pending',
        hardware: 'rpi5',
        now: 1,
      });
      await s.devices.applyState('d1', stateReport(1, { agentState: 'Idle' }), 50);
      let since: number | null = null;
      const stats = new FleetStats(
        s.sql,
        () => since,
        () => 0,
      );
      expect(await stats.summary()).toEqual({
        accepted: 2,
        online: 1,
        offline: 1,
        pending: 1,
        byStatus: { pending: 1, accepted: 2, rejected: 0, decommissioned: 0 },
        byVersion: [
          { version: null, count: 1 },
          { version: '1.0.0', count: 1 },
        ],
        byAgentState: [
          { state: null, count: 1 },
          { state: 'Idle', count: 1 },
        ],
        byHardware: [
          { hardware: null, count: 1 },
          { hardware: 'rpi4', count: 1 },
        ],
      });
      since = 51; // an external broker: online only when seen since then
      expect(await stats.online()).toBe(0);
    });

    it('ages the images the fleet runs by their release manifest’s created time', async () => {
      const { store: s } = await open();
      await addRelease(s, '1.0.0', sha('a1'), 1); // manifest created 2026-01-01T00:00:00Z
      for (const id of ['d1', 'd2']) {
        await addDevice(s, id);
        await s.devices.applyState(id, stateReport(1), 2);
      }
      const created = Date.parse('2026-01-01T00:00:00Z');
      const stats = new FleetStats(
        s.sql,
        () => null,
        () => created + 100_000,
      );
      expect(await stats.releaseCreated()).toEqual([{ version: '1.0.0', created }]);
      expect(await stats.imageAges()).toEqual({ oldest: 100, mean: 100, devices: 2 });
    });
  });

  describe('events', () => {
    it('pages a device timeline by id newest first; a deployment’s events oldest first; events received before a time', async () => {
      const { store: s } = await open();
      await addDevice(s, 'd1');
      await addDevice(s, 'd2');
      for (let i = 1; i <= 5; i++)
        await s.events.insert('d1', event(`e${i}`, i % 2 ? 'dep_1' : null), 100 * i);
      await s.events.insert('d2', event('e1', 'dep_1'), 50);
      const newest = await s.events.timeline('d1', Number.MAX_SAFE_INTEGER, 2);
      expect(newest.map((e) => e.eventId)).toEqual(['e5', 'e4']);
      expect((await s.events.timeline('d1', newest[1]!.id, 10)).map((e) => e.eventId)).toEqual([
        'e3',
        'e2',
        'e1',
      ]);
      expect(newest[0]).toMatchObject({
        deviceId: 'd1',
        seq: 1,
        ts: Date.parse('2026-01-01T00:00:00Z'),
        kind: 'download-progress',
        deploymentId: 'dep_1',
        body: event('e5', 'dep_1'),
        received: 500,
      });
      expect((await s.events.byDeployment('dep_1')).map((e) => `${e.deviceId}:${e.eventId}`)).toEqual([
        'd1:e1',
        'd1:e3',
        'd1:e5',
        'd2:e1',
      ]);
      expect((await s.events.receivedBefore('d1', 300, 10)).map((e) => e.eventId)).toEqual(['e2', 'e1']);
      expect(await s.events.count('d1')).toBe(5);
    });
  });
}
