import type { Slot } from '@flotilla/protocol';
import { parseJson } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { atomicWriteFile, readBounded } from '../fs-util.js';
import { type Bootloader, type BootState, type CommitOptions, parseFloor } from './types.js';

/** The file backend's on-disk environment: U-Boot's variables, as JSON. */
export interface FileBootEnv {
  flotilla_slot: Slot;
  flotilla_good_slot: Slot;
  upgrade_available: 0 | 1;
  bootcount: number;
  bootlimit: number;
  /** Written by `simulateBoot`: what the "bootloader" booted last (stands in for /proc/cmdline). */
  booted: Slot;
  /** The anti-rollback floor recorded by the last commit. */
  flotilla_secver?: number;
}

/**
 * A bootloader in one JSON file for simulators and tests. `simulateBoot` does what U-Boot does at
 * power-on with CONFIG_BOOTCOUNT_LIMIT + BOOTCOUNT_ENV and the Flotilla altbootcmd, so the
 * bootloader's own fallback is exercised even when the agent never comes up.
 */
export class FileBootloader implements Bootloader {
  readonly kind = 'file' as const;
  constructor(readonly path: string) {}

  /** Creates the environment of a freshly flashed device running `slot`. */
  static async create(path: string, slot: Slot, bootlimit = 3): Promise<FileBootloader> {
    const b = new FileBootloader(path);
    await b.write({
      flotilla_slot: slot,
      flotilla_good_slot: slot,
      upgrade_available: 0,
      bootcount: 0,
      bootlimit,
      booted: slot,
    });
    return b;
  }

  async env(): Promise<FileBootEnv> {
    let bytes: Buffer | null;
    try {
      bytes = await readBounded(this.path, 64 * 1024);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', this.path, { cause, component: 'bootloader' });
    }
    if (!bytes) throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `${this.path} missing`);
    try {
      return parseJson(bytes) as FileBootEnv;
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', this.path, { cause, component: 'bootloader' });
    }
  }

  private async write(env: FileBootEnv): Promise<void> {
    await atomicWriteFile(this.path, JSON.stringify(env));
  }

  private async update(patch: Partial<FileBootEnv>): Promise<void> {
    await this.write({ ...(await this.env()), ...patch });
  }

  async read(): Promise<BootState> {
    const e = await this.env();
    const floor = parseFloor(e.flotilla_secver);
    return {
      primary: e.flotilla_slot,
      good: e.flotilla_good_slot,
      trial: e.upgrade_available === 1,
      attempts: e.bootcount,
      limit: e.bootlimit,
      ...(floor !== undefined ? { securityFloor: floor } : {}),
    };
  }

  armTrial(slot: Slot, good: Slot): Promise<void> {
    return this.update({ flotilla_slot: slot, flotilla_good_slot: good, upgrade_available: 1, bootcount: 0 });
  }

  commit(slot: Slot, opts: CommitOptions = {}): Promise<void> {
    return this.update({
      flotilla_slot: slot,
      flotilla_good_slot: slot,
      upgrade_available: 0,
      bootcount: 0,
      ...(opts.securityFloor !== undefined ? { flotilla_secver: opts.securityFloor } : {}),
    });
  }

  abortTrial(good: Slot): Promise<void> {
    return this.update({ flotilla_slot: good, flotilla_good_slot: good, upgrade_available: 0, bootcount: 0 });
  }

  async bootedSlot(): Promise<Slot> {
    return (await this.env()).booted;
  }

  /** Power-on: count the attempt, fall back past the limit (altbootcmd), boot. Returns the slot. */
  async simulateBoot(): Promise<Slot> {
    const e = await this.env();
    if (e.upgrade_available === 1) {
      e.bootcount += 1;
      if (e.bootcount > e.bootlimit) {
        // altbootcmd: setenv flotilla_slot ${flotilla_good_slot}; setenv upgrade_available 0; saveenv
        e.flotilla_slot = e.flotilla_good_slot;
        e.upgrade_available = 0;
      }
    }
    e.booted = e.flotilla_slot;
    await this.write(e);
    return e.booted;
  }
}
