import { constants } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import type { Slot } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';

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
  /**
   * Writes back and drops what the kernel caches of this slot, so the next read comes from the
   * medium (the read-back hash must not be answered by the page cache of the write).
   */
  dropCache?(): Promise<void>;
  /** The device number (st_rdev) when the slot is a block device, else null. */
  blockDevice?(): Promise<number | null>;
}

/** `major:minor` as /proc/self/mountinfo writes it, from a Linux device number. */
export function deviceNumberText(dev: number): string {
  // new_encode_dev: minor's low 8 bits | major << 8 | minor's high bits << 12
  const major = (dev >>> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** Device numbers (`major:minor`) of every mounted filesystem, from /proc/self/mountinfo. */
export async function mountedDevices(mountinfo = '/proc/self/mountinfo'): Promise<Set<string>> {
  const text = await readFile(mountinfo, 'utf8').catch(() => '');
  return new Set(
    text
      .split('\n')
      .map((line) => line.split(' ')[2] ?? '')
      .filter(Boolean),
  );
}

/** Block device or regular file. Never truncates: an image smaller than the slot leaves the tail. */
export class FileSlotDevice implements SlotDevice {
  constructor(
    readonly name: string,
    readonly path: string,
    private readonly configuredSize?: number,
    private readonly system: { mountinfo?: string; blockdev?: string } = {},
  ) {}

  async size(): Promise<number> {
    if (this.configuredSize !== undefined) return this.configuredSize;
    const st = await stat(this.path);
    if (st.isBlockDevice()) {
      // Node cannot ioctl(BLKGETSIZE64); sysfs gives the size in 512-byte sectors.
      const sectors = await readFile(`/sys/dev/block/${deviceNumberText(st.rdev)}/size`, 'utf8');
      return Number.parseInt(sectors.trim(), 10) * 512;
    }
    return st.size;
  }

  async blockDevice(): Promise<number | null> {
    const st = await stat(this.path);
    return st.isBlockDevice() ? st.rdev : null;
  }

  /**
   * A block device: `blockdev --flushbufs` (BLKFLSBUF) writes back and invalidates its buffer
   * cache, so the read-back comes from the medium. Node has no posix_fadvise and O_DIRECT needs
   * aligned buffers it cannot promise. A regular file (simulators) has nothing to drop.
   */
  async dropCache(): Promise<void> {
    if ((await this.blockDevice()) === null) return;
    const r = await execBounded([this.system.blockdev ?? 'blockdev', '--flushbufs', this.path], {
      timeoutMs: 60_000,
    }).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_IO', `blockdev --flushbufs ${this.path}`, { cause });
    });
    if (r.code !== 0)
      throw new AgentError('FLOTILLA_ERR_AGENT_IO', `blockdev --flushbufs ${this.path}: ${r.output.trim()}`);
  }

  async openRead(): Promise<SlotReader> {
    const fh = await open(this.path, constants.O_RDONLY);
    return {
      read: async (buf, position, length = buf.length) => (await fh.read(buf, 0, length, position)).bytesRead,
      close: () => fh.close(),
    };
  }

  /**
   * A mounted slot is refused (a filesystem on it would be corrupted under its feet); a block
   * device is opened O_EXCL, which the kernel refuses while anything mounts or holds it.
   */
  async openWrite(): Promise<SlotWriter> {
    const dev = await this.blockDevice().catch(() => null);
    if (dev !== null) {
      const mounted = await mountedDevices(this.system.mountinfo);
      if (mounted.has(deviceNumberText(dev)))
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_SLOT_MOUNTED',
          `${this.path} (${deviceNumberText(dev)}) is mounted`,
        );
    }
    const flags = constants.O_RDWR | (dev !== null ? constants.O_EXCL : 0);
    const fh = await open(this.path, flags).catch((cause: NodeJS.ErrnoException) => {
      if (cause.code === 'EBUSY')
        throw new AgentError('FLOTILLA_ERR_AGENT_SLOT_MOUNTED', `${this.path} is busy (O_EXCL)`, { cause });
      throw cause;
    });
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
