import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresDriver } from '../src/store/postgres/index.js';
import { SqliteDriver } from '../src/store/sqlite-driver.js';
import { Store } from '../src/store/store.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from './helpers/postgres.js';

if (!postgresBin) console.warn(POSTGRES_MISSING);

const dir = mkdtempSync(join(tmpdir(), 'flotilla-connection-node-'));
let pg: TestPostgres | undefined;
beforeAll(async () => {
  if (postgresBin) pg = await startTestPostgres('flotilla_connection_node');
}, 120_000);
afterAll(async () => {
  await pg?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const engines: { name: string; skip: boolean; open: () => Promise<Store> }[] = [
  { name: 'SQLite', skip: false, open: () => Store.fromDriver(SqliteDriver.open(join(dir, 'server.db'))) },
  {
    name: 'PostgreSQL',
    skip: !postgresBin,
    open: async () => Store.fromDriver(await openPostgresDriver(await pg!.createDatabase('connection_node'))),
  },
];

for (const engine of engines)
  describe.skipIf(engine.skip)(`the node holding a device connection (${engine.name})`, () => {
    it('marks a device offline only from the node that holds it; a late offline from the node it left changes nothing', async () => {
      const s = await engine.open();
      try {
        for (const id of ['TEST-ONLY-a', 'TEST-ONLY-b'])
          await s.devices.insert({ id, publicKey: 'ab'.repeat(32), status: 'accepted', now: 1 });
        expect(await s.devices.setOnline('TEST-ONLY-a', true, 2, 'node-1')).toBe(true);
        expect(await s.devices.setOnline('TEST-ONLY-b', true, 2, 'node-1')).toBe(true);
        expect(await s.devices.onlineOn('node-1')).toEqual(['TEST-ONLY-a', 'TEST-ONLY-b']);
        // b moved to node-2 before node-1's offline for it arrived.
        await s.devices.setOnline('TEST-ONLY-b', true, 3, 'node-2');
        expect(await s.devices.setOnline('TEST-ONLY-b', false, 4, 'node-1')).toBe(false);
        expect((await s.devices.get('TEST-ONLY-b'))?.online).toBe(true);
        expect(await s.devices.onlineOn('node-1')).toEqual(['TEST-ONLY-a']);
        expect(await s.devices.onlineOn('node-2')).toEqual(['TEST-ONLY-b']);
        // node-1 died: its device goes offline, once.
        expect(await s.devices.setOnline('TEST-ONLY-a', false, 5, 'node-1')).toBe(true);
        expect(await s.devices.setOnline('TEST-ONLY-a', false, 6, 'node-1')).toBe(false);
        expect((await s.devices.get('TEST-ONLY-a'))?.online).toBe(false);
        expect(await s.devices.onlineOn('node-1')).toEqual([]);
        // Without a node (an external broker's will): offline whatever node was recorded.
        expect(await s.devices.setOnline('TEST-ONLY-b', false, 7)).toBe(true);
        expect((await s.devices.get('TEST-ONLY-b'))?.online).toBe(false);
        expect(await s.devices.onlineOn('node-2')).toEqual([]);
      } finally {
        await s.close();
      }
    });
  });
