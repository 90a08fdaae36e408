import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileOutbox, type Outbox } from '../src/index.js';
import { MemoryOutbox } from '../src/testing.js';

/** The report outbox contract, run against the on-disk outbox and the in-memory one. */
interface Harness {
  make(bounds: { maxEvents: number; maxBytes: number }): Outbox;
  /** A restart: a new instance over the same storage, its wall clock at `now` (when it has one). */
  reopen(o: Outbox, now?: () => number): Outbox;
}

/** A wall clock stuck at one millisecond: every event of a burst gets the same time. */
const FROZEN = () => 1_764_000_000_000;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-outbox-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const OUTBOXES: Record<string, Harness> = {
  file: {
    make: (b) => new FileOutbox(join(dir, 'outbox'), b, FROZEN),
    reopen: (o, now) => new FileOutbox((o as FileOutbox).dir, { maxEvents: 100, maxBytes: 1 << 20 }, now),
  },
  memory: {
    make: (b) => new MemoryOutbox(b),
    reopen: (o) => o,
  },
};

const roomy = { maxEvents: 100, maxBytes: 1 << 20 };
const payloads = async (o: Outbox) => (await o.list()).map((i) => i.payload);

for (const [name, h] of Object.entries(OUTBOXES)) {
  describe(`outbox contract: ${name}`, () => {
    it('starts empty', async () => {
      expect(await h.make(roomy).list()).toEqual([]);
    });

    it('lists events oldest first with exactly the bytes added', async () => {
      const o = h.make(roomy);
      for (const p of ['{"n":1}', '{"n":2}', '{"n":"ü"}']) await o.add(p);
      expect(await payloads(o)).toEqual(['{"n":1}', '{"n":2}', '{"n":"ü"}']);
    });

    it('concurrent adds all land, in the order they were called', async () => {
      const o = h.make(roomy);
      await Promise.all(Array.from({ length: 20 }, (_, i) => o.add(`{"n":${i}}`)));
      expect(await payloads(o)).toEqual(Array.from({ length: 20 }, (_, i) => `{"n":${i}}`));
    });

    it('remove takes out exactly that event; an unknown id is a no-op', async () => {
      const o = h.make(roomy);
      for (const p of ['a', 'b', 'c']) await o.add(p);
      const [, b] = await o.list();
      await o.remove(b!.id);
      await o.remove(b!.id);
      await o.remove('no-such-id');
      expect(await payloads(o)).toEqual(['a', 'c']);
    });

    it('keeps its events across a restart, and later events sort after them (same millisecond, clock set back)', async () => {
      const o = h.make(roomy);
      for (const p of ['1', '2', '3']) await o.add(p);
      const again = h.reopen(o, FROZEN);
      await again.add('4');
      expect(await payloads(again)).toEqual(['1', '2', '3', '4']);
      const setBack = h.reopen(again, () => FROZEN() - 3_600_000);
      await setBack.add('5');
      expect(await payloads(setBack)).toEqual(['1', '2', '3', '4', '5']);
    });

    it('past maxEvents the oldest are dropped and counted once', async () => {
      const o = h.make({ maxEvents: 3, maxBytes: 1 << 20 });
      for (const p of ['1', '2', '3', '4', '5']) await o.add(p);
      expect(await payloads(o)).toEqual(['3', '4', '5']);
      expect(o.takeDropped()).toBe(2);
      expect(o.takeDropped()).toBe(0);
    });

    it('past maxBytes the oldest are dropped', async () => {
      const o = h.make({ maxEvents: 100, maxBytes: 25 });
      for (const p of ['a'.repeat(10), 'b'.repeat(10), 'c'.repeat(10)]) await o.add(p);
      expect(await payloads(o)).toEqual(['b'.repeat(10), 'c'.repeat(10)]);
      expect(o.takeDropped()).toBe(1);
    });
  });
}
