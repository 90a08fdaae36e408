import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AGENT_LIMITS,
  type AgentRecord,
  FileSecurityFloor,
  FileStateStore,
  type SecurityFloorStore,
  type StateStore,
} from '../src/index.js';
import { MemorySecurityFloor, MemoryStateStore } from '../src/testing.js';

/**
 * One contract, every implementation (like MQTT.js's abstract store tests): the file-backed
 * stores the agent uses on a device and the in-memory ones of the tests must behave the same.
 * `make(raw)` opens a store whose storage already holds `raw`; `reopen` is a restart.
 */
interface Harness<S> {
  make(raw?: string): Promise<S>;
  reopen(store: S): Promise<S>;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-store-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const STATE_STORES: Record<string, Harness<StateStore>> = {
  file: {
    async make(raw) {
      if (raw !== undefined) await writeFile(join(dir, 'state.json'), raw);
      return new FileStateStore(join(dir, 'state.json'));
    },
    reopen: async () => new FileStateStore(join(dir, 'state.json')),
  },
  memory: {
    make: async (raw) => new MemoryStateStore(raw ?? null),
    reopen: async (s) => s,
  },
};

const FLOOR_STORES: Record<string, Harness<SecurityFloorStore>> = {
  file: {
    async make(raw) {
      if (raw !== undefined) await writeFile(join(dir, 'floor.json'), raw);
      return new FileSecurityFloor(join(dir, 'floor.json'));
    },
    reopen: async () => new FileSecurityFloor(join(dir, 'floor.json')),
  },
  memory: {
    make: async (raw) => new MemorySecurityFloor(raw ?? null),
    reopen: async (s) => s,
  },
};

function record(over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    schemaVersion: 1,
    state: 'Downloading',
    committedSlot: 'A',
    slots: { A: { version: '1.0.0', imageSha256: 'a'.repeat(64), releaseFile: 'releases/x.json' }, B: null },
    securityVersion: 3,
    deployment: {
      id: 'dep-1',
      attempt: 1,
      origin: 'server',
      version: '1.1.0',
      kind: 'release',
      imageSha256: 'b'.repeat(64),
      securityVersion: 4,
      fromSlot: 'A',
      targetSlot: 'B',
      releaseFile: 'releases/y.json',
      offerFile: 'offers/z.json',
      method: 'full',
      full: { url: 'https://example.invalid/a', size: 1024, sha256: 'b'.repeat(64) },
      delta: null,
      deltaRefused: null,
      verifiedChunks: 7,
    },
    runs: { Offered: 1, Downloading: 2 },
    lastError: null,
    lastDeployment: null,
    recentCommands: ['cmd-1'],
    ...over,
  };
}

for (const [name, h] of Object.entries(STATE_STORES)) {
  describe(`state store contract: ${name}`, () => {
    it('an empty store loads as null (first start)', async () => {
      expect(await (await h.make()).load()).toBeNull();
    });

    it('save then load gives back an equal record, also after a restart', async () => {
      const s = await h.make();
      await s.save(record());
      expect(await s.load()).toEqual(record());
      expect(await (await h.reopen(s)).load()).toEqual(record());
    });

    it('a later save replaces the whole record', async () => {
      const s = await h.make();
      await s.save(record());
      await s.save(record({ state: 'Idle', deployment: null, runs: {} }));
      expect(await (await h.reopen(s)).load()).toEqual(record({ state: 'Idle', deployment: null, runs: {} }));
    });

    it('a loaded record is a copy: changing it does not change what is stored', async () => {
      const s = await h.make();
      const r = record();
      await s.save(r);
      r.state = 'Failed';
      const loaded = (await s.load())!;
      loaded.deployment!.verifiedChunks = 99;
      expect(await s.load()).toEqual(record());
    });

    const corrupt: Record<string, string> = {
      'a torn write': '{"schemaVersion":1,"state":"Down',
      'not an object': '[]',
      'an unknown schema version': JSON.stringify(record({ schemaVersion: 2 as 1 })),
      'an unknown state': JSON.stringify(record({ state: 'Exploded' as 'Idle' })),
      'a non-numeric floor': JSON.stringify({ ...record(), securityVersion: '9' }),
      'more than the size bound': `{"pad":"${'x'.repeat(AGENT_LIMITS.maxStateFileBytes)}"}`,
    };
    for (const [what, raw] of Object.entries(corrupt)) {
      it(`refuses ${what} with FLOTILLA_ERR_AGENT_STATE_CORRUPT`, async () => {
        await expect((await h.make(raw)).load()).rejects.toMatchObject({
          code: 'FLOTILLA_ERR_AGENT_STATE_CORRUPT',
        });
      });
    }
  });
}

for (const [name, h] of Object.entries(FLOOR_STORES)) {
  describe(`security floor store contract: ${name}`, () => {
    it('an empty store loads as null', async () => {
      expect(await (await h.make()).load()).toBeNull();
    });

    it('raise stores the floor durably and never lowers it', async () => {
      const s = await h.make();
      expect(await s.raise(3)).toBe(3);
      expect(await s.raise(5)).toBe(5);
      expect(await s.raise(2)).toBe(5);
      expect(await s.raise(5)).toBe(5);
      expect(await (await h.reopen(s)).load()).toBe(5);
    });

    it('unreadable contents are refused with FLOTILLA_ERR_AGENT_STATE_CORRUPT, and a raise replaces them', async () => {
      for (const raw of ['garbage', '{"schemaVersion":1,"securityVersion":-1}', '{"securityVersion":4}']) {
        const s = await h.make(raw);
        await expect(s.load()).rejects.toMatchObject({ code: 'FLOTILLA_ERR_AGENT_STATE_CORRUPT' });
        expect(await s.raise(4)).toBe(4);
        expect(await (await h.reopen(s)).load()).toBe(4);
      }
    });

    it('refuses a floor that is not a non-negative integer', async () => {
      const s = await h.make();
      for (const bad of [-1, 1.5, Number.NaN]) await expect(s.raise(bad)).rejects.toThrow(RangeError);
      expect(await s.load()).toBeNull();
    });
  });
}
