import { constants, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { SimError } from './errors.js';
import type { PowerGate } from './power.js';
import type { DeviceSlots, SlotName } from './slot-store.js';

/**
 * One slot of a simulated device, in the shape the agent's `SlotDevice` expects
 * (name, size, openRead, openWrite). Reads come from the shared base or the device's own file;
 * opening for write first gives the device its own file (copy-on-write), and every write and
 * sync goes through the device's power gate. Writes not yet synced when the power is cut are
 * lost (zeroed), as the page cache would lose them: resume logic must rely on fsync'ed data only.
 */
export interface SlotReaderLike {
  read(buf: Buffer, position: number, length?: number): Promise<number>;
  close(): Promise<void>;
}
export interface SlotWriterLike {
  write(data: Uint8Array, position: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export class SimSlotDevice {
  constructor(
    readonly name: SlotName,
    private readonly slots: DeviceSlots,
    private readonly power: PowerGate,
    private readonly counters: { bytesWritten: number },
  ) {}

  async size(): Promise<number> {
    return this.slots.slotSize;
  }

  async openRead(): Promise<SlotReaderLike> {
    const path = this.slots.readPath(this.name);
    if (path === null) {
      // An empty slot reads as zeros, like a blank partition.
      const size = this.slots.slotSize;
      return {
        read: async (buf, position, length = buf.length) => {
          const n = Math.max(0, Math.min(length, size - position));
          buf.fill(0, 0, n);
          return n;
        },
        close: async () => undefined,
      };
    }
    const fh = await open(path, constants.O_RDONLY);
    // A dead agent never closes what it had open: the power cut does.
    this.power.onCut(() => {
      fh.close().catch(() => undefined);
    });
    return {
      read: async (buf, position, length = buf.length) => (await fh.read(buf, 0, length, position)).bytesRead,
      close: () => fh.close(),
    };
  }

  async openWrite(): Promise<SlotWriterLike> {
    const path = await this.power.guard(() => this.slots.prepareWrite(this.name));
    const fh = await open(path, constants.O_RDWR).catch((err: unknown) => {
      throw new SimError('FLOTILLA_ERR_SIM_SLOT', `cannot open ${path}`, { cause: err });
    });
    let unsynced: [number, number][] = [];
    this.power.onCut(() => {
      for (const [pos, len] of unsynced) {
        try {
          writeSync(fh.fd, Buffer.alloc(len), 0, len, pos);
        } catch {}
      }
      unsynced = [];
      fh.close().catch(() => undefined);
    });
    const size = this.slots.slotSize;
    return {
      write: (data, position) =>
        this.power.guard(async () => {
          if (position + data.length > size)
            throw new SimError(
              'FLOTILLA_ERR_SIM_SLOT',
              `${this.name}: write of ${data.length} bytes at ${position} past the end (${size})`,
            );
          let done = 0;
          while (done < data.length) {
            const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
            done += bytesWritten;
          }
          unsynced.push([position, data.length]);
          this.counters.bytesWritten += data.length;
        }),
      sync: () =>
        this.power.guard(async () => {
          const pending = unsynced;
          await fh.sync();
          unsynced = unsynced.filter((r) => !pending.includes(r));
        }),
      close: () => this.power.guard(() => fh.close()),
    };
  }
}
