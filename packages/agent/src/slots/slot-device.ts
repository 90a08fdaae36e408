import { constants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import type { Slot } from '@flotilla/protocol';
import { AgentError } from '../errors.js';

export interface SlotReader {
  /** Reads up to `length` bytes at `position` into `buf`; returns how many were read. */
  read(buf: Buffer, position: number, length?: number): Promise<number>;
  close(): Promise<void>;
}

export interface SlotWriter {
  write(data: Uint8Array, position: number): Promise<void>;
  /** Durable: after sync, a power cut keeps what was written. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** One A/B slot: a block device or a file (simulators), opened read-only unless installing. */
export interface SlotDevice {
  readonly name: string;
  size(): Promise<number>;
  openRead(): Promise<SlotReader>;
  openWrite(): Promise<SlotWriter>;
}

/** Block device or regular file. Never truncates: an image smaller than the slot leaves the tail. */
export class FileSlotDevice implements SlotDevice {
  constructor(
    readonly name: string,
    readonly path: string,
    private readonly configuredSize?: number,
  ) {}

  async size(): Promise<number> {
    if (this.configuredSize !== undefined) return this.configuredSize;
    const st = await stat(this.path);
    if (st.isBlockDevice()) {
      // Node cannot ioctl(BLKGETSIZE64); sysfs gives the size in 512-byte sectors.
      const major = Math.floor(st.rdev / 256);
      const minor = st.rdev % 256;
      const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
      return Number.parseInt(sectors.trim(), 10) * 512;
    }
    return st.size;
  }

  async openRead(): Promise<SlotReader> {
    const fh = await open(this.path, constants.O_RDONLY);
    return {
      read: async (buf, position, length = buf.length) => (await fh.read(buf, 0, length, position)).bytesRead,
      close: () => fh.close(),
    };
  }

  async openWrite(): Promise<SlotWriter> {
    const fh = await open(this.path, constants.O_RDWR);
    return {
      write: async (data, position) => {
        let done = 0;
        while (done < data.length) {
          const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
          done += bytesWritten;
        }
      },
      sync: () => fh.sync(),
      close: () => fh.close(),
    };
  }
}

/** A slot in memory (unit tests). */
export class MemorySlotDevice implements SlotDevice {
  readonly bytes: Buffer;
  constructor(
    readonly name: string,
    size: number,
  ) {
    this.bytes = Buffer.alloc(size);
  }
  async size(): Promise<number> {
    return this.bytes.length;
  }
  async openRead(): Promise<SlotReader> {
    return {
      read: async (buf, position, length = buf.length) =>
        this.bytes.copy(buf, 0, position, Math.min(this.bytes.length, position + length)),
      close: async () => undefined,
    };
  }
  async openWrite(): Promise<SlotWriter> {
    return {
      write: async (data, position) => {
        if (position + data.length > this.bytes.length)
          throw new RangeError('write past the end of the slot');
        this.bytes.set(data, position);
      },
      sync: async () => undefined,
      close: async () => undefined,
    };
  }
}

/**
 * The two slots, with the one rule that matters: the slot the system booted from is never opened
 * for writing, whatever the caller asks.
 */
export class SlotSet {
  constructor(private readonly devices: Record<Slot, SlotDevice>) {}

  device(slot: Slot): SlotDevice {
    return this.devices[slot];
  }

  openRead(slot: Slot): Promise<SlotReader> {
    return this.devices[slot].openRead();
  }

  async openForInstall(slot: Slot, booted: Slot): Promise<SlotWriter> {
    if (slot === booted)
      throw new AgentError('FLOTILLA_ERR_AGENT_ACTIVE_SLOT_WRITE', `slot ${slot} is booted`);
    return this.devices[slot].openWrite();
  }
}
