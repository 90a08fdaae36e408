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
    save: async (record) => {
      hit('io:state-save');
      await store.save(record);
    },
  };
}

export function faultyFloor(floor: SecurityFloorStore, hit: Hit): SecurityFloorStore {
  return {
    load: () => floor.load(),
    raise: async (version) => {
      hit('io:floor-raise');
      return floor.raise(version);
    },
  };
}

export function faultyBootloader(bootloader: Bootloader, hit: Hit): Bootloader {
  return {
    kind: bootloader.kind,
    read: () => bootloader.read(),
    bootedSlot: () => bootloader.bootedSlot(),
    armTrial: async (slot, good) => {
      hit('io:bootloader-arm');
      await bootloader.armTrial(slot, good);
    },
    commit: async (slot, options) => {
      hit('io:bootloader-commit');
      await bootloader.commit(slot, options);
    },
    abortTrial: async (good) => {
      hit('io:bootloader-abort');
      await bootloader.abortTrial(good);
    },
  };
}

export function faultyOutbox(outbox: Outbox, hit: Hit): Outbox {
  return {
    add: async (payload) => {
      hit('io:outbox-add');
      await outbox.add(payload);
    },
    list: () => outbox.list(),
    remove: (id) => outbox.remove(id),
    takeDropped: () => outbox.takeDropped(),
  };
}

/**
 * Slot writes can be cut in the middle: the point `io:slot-write` fires before each write, and
 * when it is the fatal one half of the buffer reaches the device first (a torn chunk).
 */
export function faultySlots(devices: { A: SlotDevice; B: SlotDevice }, cut: PowerCut): SlotSet {
  const wrap = (device: SlotDevice): SlotDevice => ({
    name: device.name,
    size: () => device.size(),
    openRead: () => device.openRead(),
    openWrite: async (): Promise<SlotWriter> => {
      const writer = await device.openWrite();
      return {
        write: async (data, pos) => {
          try {
            cut.hit('io:slot-write');
          } catch (err) {
            if (cut.dead) await writer.write(data.subarray(0, data.length >> 1), pos).catch(() => undefined);
            await writer.close().catch(() => undefined);
            throw err;
          }
          await writer.write(data, pos);
        },
        sync: async () => {
          cut.hit('io:slot-sync');
          await writer.sync();
        },
        close: () => writer.close(),
      };
    },
  });
  return new SlotSet({ A: wrap(devices.A), B: wrap(devices.B) });
}
