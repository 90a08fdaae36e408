import type { Bootloader } from '../bootloader/types.js';
import { AgentKilled } from '../errors.js';
import type { Outbox } from '../report/outbox.js';
import type { SlotDevice, SlotWriter } from '../slots/slot-device.js';
import { SlotSet } from '../slots/slot-device.js';
import type { SecurityFloorStore } from '../state/security-floor.js';
import type { StateStore } from '../state/store.js';

/**
 * Power-cut injection for tests and the simulator. Every I/O side effect of the agent passes a
 * named point; a plan says at which one the "power" goes. After that, every further I/O of the
 * dead agent throws too, so nothing it still had in flight can touch the disk.
 */
export class PowerCut {
  dead = false;
  count = 0;
  /** Points seen, in order (for choosing a random instant and for debugging). */
  readonly seen: string[] = [];
  constructor(
    private readonly plan: { atCount?: number; atPoint?: string; atPointOccurrence?: number } = {},
    private readonly keepTrace = false,
  ) {}

  private occurrences = 0;

  /** The injector the agent calls, and the wrappers below call. */
  readonly hit = (point: string): void => {
    if (this.dead) throw new AgentKilled(`after power cut (${point})`);
    this.count++;
    if (this.keepTrace) this.seen.push(point);
    let cut = this.plan.atCount !== undefined && this.count === this.plan.atCount;
    if (this.plan.atPoint !== undefined && point === this.plan.atPoint) {
      this.occurrences++;
      if (this.occurrences === (this.plan.atPointOccurrence ?? 1)) cut = true;
    }
    if (cut) {
      this.dead = true;
      throw new AgentKilled(point);
    }
  };
}

type Hit = (point: string) => void;

export function faultyStore(store: StateStore, hit: Hit): StateStore {
  return {
    load: () => store.load(),
    save: async (r) => {
      hit('io:state-save');
      await store.save(r);
    },
  };
}

export function faultyFloor(f: SecurityFloorStore, hit: Hit): SecurityFloorStore {
  return {
    load: () => f.load(),
    raise: async (v) => {
      hit('io:floor-raise');
      return f.raise(v);
    },
  };
}

export function faultyBootloader(b: Bootloader, hit: Hit): Bootloader {
  return {
    kind: b.kind,
    read: () => b.read(),
    bootedSlot: () => b.bootedSlot(),
    armTrial: async (s, g) => {
      hit('io:bootloader-arm');
      await b.armTrial(s, g);
    },
    commit: async (s, opts) => {
      hit('io:bootloader-commit');
      await b.commit(s, opts);
    },
    abortTrial: async (g) => {
      hit('io:bootloader-abort');
      await b.abortTrial(g);
    },
  };
}

export function faultyOutbox(o: Outbox, hit: Hit): Outbox {
  return {
    add: async (p) => {
      hit('io:outbox-add');
      await o.add(p);
    },
    list: () => o.list(),
    remove: (id) => o.remove(id),
    takeDropped: () => o.takeDropped(),
  };
}

/**
 * Slot writes can be cut in the middle: the point `io:slot-write` fires before each write, and
 * when it is the fatal one half of the buffer reaches the device first (a torn chunk).
 */
export function faultySlots(devices: { A: SlotDevice; B: SlotDevice }, cut: PowerCut): SlotSet {
  const wrap = (d: SlotDevice): SlotDevice => ({
    name: d.name,
    size: () => d.size(),
    openRead: () => d.openRead(),
    openWrite: async (): Promise<SlotWriter> => {
      const w = await d.openWrite();
      return {
        write: async (data, pos) => {
          try {
            cut.hit('io:slot-write');
          } catch (err) {
            if (cut.dead) await w.write(data.subarray(0, data.length >> 1), pos).catch(() => undefined);
            await w.close().catch(() => undefined);
            throw err;
          }
          await w.write(data, pos);
        },
        sync: async () => {
          cut.hit('io:slot-sync');
          await w.sync();
        },
        close: () => w.close(),
      };
    },
  });
  return new SlotSet({ A: wrap(devices.A), B: wrap(devices.B) });
}
