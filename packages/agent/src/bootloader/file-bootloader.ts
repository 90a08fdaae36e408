import { BOOT_VARS, decideUbootBoot, parseJson, type Slot } from '@flotilla/protocol';
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
 * A bootloader in one JSON file for simulators and tests. `simulateBoot` decides at power-on
 * what the generated U-Boot boot script decides (the boot contract), so the bootloader's own
 * fallback is exercised even when the agent never comes up.
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

  /** Power-on: what the generated boot script does (the boot contract's decision), then boot. */
  async simulateBoot(): Promise<Slot> {
    const e = await this.env();
    const decision = decideUbootBoot({
      [BOOT_VARS.slot]: e.flotilla_slot,
      [BOOT_VARS.good]: e.flotilla_good_slot,
      [BOOT_VARS.upgrade]: String(e.upgrade_available),
      [BOOT_VARS.count]: e.bootcount.toString(16),
      [BOOT_VARS.limit]: String(e.bootlimit),
    });
    const savedCount = decision.save[BOOT_VARS.count];
    if (savedCount !== undefined) e.bootcount = Number.parseInt(savedCount, 16);
    if (decision.save[BOOT_VARS.upgrade] !== undefined) e.upgrade_available = 0;
    e.flotilla_slot = decision.slot;
    e.booted = decision.slot;
    await this.write(e);
    return e.booted;
  }
}
