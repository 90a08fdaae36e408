import { basename, dirname, join } from 'node:path';
import {
  BOOT_VARS,
  DEFAULT_BOOTLIMIT,
  GRUB_COMMITTED_ENV_PATH,
  GRUB_COMMITTED_VAR,
  MAX_BOOTLIMIT,
  parseGrubEnv,
  type Slot,
  serializeGrubEnv,
} from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { atomicWriteFile, readBounded } from '../fs-util.js';
import { type Bootloader, type BootState, type CommitOptions, parseSlot } from './types.js';
import { type BootedSlotSources, bootedSlotOf, floorOf } from './uboot.js';

/**
 * GRUB cannot do arithmetic, so the generated grub.cfg (renderGrubCfg in the boot contract)
 * counts the trial down through string compares: `boot_left` replaces bootcount (attempts left),
 * `bootlimit` is kept for reporting. The other names are U-Boot's, with the same meaning.
 */
export const GRUB_VARS = {
  slot: BOOT_VARS.slot,
  good: BOOT_VARS.good,
  upgrade: BOOT_VARS.upgrade,
  left: BOOT_VARS.left,
  limit: BOOT_VARS.limit,
  floor: BOOT_VARS.floor,
} as const;

export interface GrubOptions extends BootedSlotSources {
  /** The grubenv file (on the ESP: /boot/efi/EFI/BOOT/grubenv). */
  envFile: string;
  /** Trial attempts before fallback (1..MAX_BOOTLIMIT: grub.cfg counts down one digit). */
  bootlimit?: number;
}

/**
 * Reads and writes grubenv. grub-editenv rewrites the file in place (O_TRUNC), so a power cut can
 * leave it empty: here a full new copy is written and fsynced beside it and renamed over it, so
 * the file holds the old or the new block. GRUB's own save_env rewrites the same 1 KiB in place.
 */
export class GrubEnv {
  constructor(readonly opts: Pick<GrubOptions, 'envFile'>) {}

  /** grubenv-committed beside grubenv: the slot grub.cfg boots when grubenv is torn. */
  get committedFile(): string {
    return join(dirname(this.opts.envFile), basename(GRUB_COMMITTED_ENV_PATH));
  }

  /** Written (by rename) before grubenv at every commit, so it never names a slot not yet committed. */
  async writeCommitted(slot: Slot): Promise<void> {
    const block = serializeGrubEnv({ [GRUB_COMMITTED_VAR]: slot })!;
    try {
      await atomicWriteFile(this.committedFile, block);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `cannot write ${this.committedFile}`, {
        cause,
        component: 'grub',
      });
    }
  }

  /** What grubenv-committed names: the committed slot (A when unreadable, as grub.cfg decides). */
  async readCommitted(): Promise<Slot> {
    const bytes = await readBounded(this.committedFile, 64 * 1024).catch(() => null);
    const vars = bytes ? parseGrubEnv(bytes) : null;
    return parseSlot(vars?.[GRUB_COMMITTED_VAR]) ?? 'A';
  }

  /** The block as it is, or null when the file is there but not a whole block (torn). */
  async readAllOrTorn(): Promise<Record<string, string> | null> {
    return parseGrubEnv(await this.readBytes());
  }

  /** Writes a whole new block (by rename), replacing whatever the file holds. */
  async replace(vars: Record<string, string | number>): Promise<void> {
    const block = serializeGrubEnv(Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(v)])));
    if (!block)
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', 'grubenv variables exceed 1 KiB', {
        component: 'grub',
      });
    try {
      await atomicWriteFile(this.opts.envFile, block);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `cannot write ${this.opts.envFile}`, {
        cause,
        component: 'grub',
      });
    }
  }

  async readAll(): Promise<Record<string, string>> {
    const vars = await this.readAllOrTorn();
    if (!vars)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_BOOTLOADER',
        `${this.opts.envFile} is not a 1 KiB GRUB environment block`,
        {
          component: 'grub',
        },
      );
    return vars;
  }

  private async readBytes(): Promise<Buffer> {
    let bytes: Buffer | null;
    try {
      bytes = await readBounded(this.opts.envFile, 64 * 1024);
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', this.opts.envFile, { cause, component: 'grub' });
    }
    if (!bytes)
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `${this.opts.envFile} missing`, {
        component: 'grub',
      });
    return bytes;
  }

  /** All variables in one write of the whole block. */
  async setMany(vars: Record<string, string | number>): Promise<void> {
    for (const [k, v] of Object.entries(vars)) {
      if (!/^[A-Za-z0-9_]+$/.test(k) || /[\n\r]/.test(String(v)))
        throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `refusing variable ${k}`, {
          component: 'grub',
        });
    }
    await this.replace({ ...(await this.readAll()), ...vars });
  }
}

export class GrubBootloader implements Bootloader {
  readonly kind = 'grub' as const;
  readonly env: GrubEnv;
  constructor(readonly opts: GrubOptions) {
    this.env = new GrubEnv(opts);
    const limit = opts.bootlimit ?? DEFAULT_BOOTLIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BOOTLIMIT)
      throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `grub bootlimit must be 1..${MAX_BOOTLIMIT}`);
  }

  private get limit(): number {
    return this.opts.bootlimit ?? DEFAULT_BOOTLIMIT;
  }

  /**
   * A torn grubenv (GRUB's own save_env rewrites it in place; a power cut there leaves no header
   * or half a block) made grub.cfg boot the committed slot. The agent rebuilds the block for that
   * slot, with no trial armed, and says so once (`repaired`); it never guesses a trial.
   */
  private async repairTorn(): Promise<{ vars: Record<string, string>; found: string }> {
    const committed = await this.env.readCommitted();
    const vars = {
      [GRUB_VARS.slot]: committed,
      [GRUB_VARS.good]: committed,
      [GRUB_VARS.upgrade]: '0',
      [GRUB_VARS.limit]: String(this.limit),
      [GRUB_VARS.left]: String(this.limit),
    };
    await this.env.replace(vars);
    return {
      vars,
      found: `${this.opts.envFile} was not a whole environment block; rebuilt for committed slot ${committed}`,
    };
  }

  async read(): Promise<BootState> {
    const whole = await this.env.readAllOrTorn();
    const repair = whole ? null : await this.repairTorn();
    const v = whole ?? repair!.vars;
    const primary = parseSlot(v[GRUB_VARS.slot]);
    if (!primary)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_BOOTLOADER',
        `${GRUB_VARS.slot} is '${v[GRUB_VARS.slot] ?? ''}'`,
        {
          component: 'grub',
        },
      );
    const limit = Number.parseInt(v[GRUB_VARS.limit] ?? String(this.limit), 10) || this.limit;
    const left = Number.parseInt(v[GRUB_VARS.left] ?? String(limit), 10);
    return {
      primary,
      good: parseSlot(v[GRUB_VARS.good]) ?? primary,
      trial: v[GRUB_VARS.upgrade] === '1',
      attempts: Math.max(0, limit - (Number.isFinite(left) ? left : limit)),
      limit,
      ...floorOf(v[GRUB_VARS.floor]),
      ...(repair ? { repaired: repair.found } : {}),
    };
  }

  armTrial(slot: Slot, good: Slot): Promise<void> {
    return this.env.setMany({
      [GRUB_VARS.good]: good,
      [GRUB_VARS.limit]: this.limit,
      [GRUB_VARS.left]: this.limit,
      [GRUB_VARS.slot]: slot,
      [GRUB_VARS.upgrade]: 1,
    });
  }

  async commit(slot: Slot, opts: CommitOptions = {}): Promise<void> {
    await this.env.writeCommitted(slot);
    await this.env.setMany({
      [GRUB_VARS.slot]: slot,
      [GRUB_VARS.good]: slot,
      [GRUB_VARS.upgrade]: 0,
      [GRUB_VARS.left]: this.limit,
      ...(opts.securityFloor !== undefined ? { [GRUB_VARS.floor]: opts.securityFloor } : {}),
    });
  }

  async abortTrial(good: Slot): Promise<void> {
    await this.env.writeCommitted(good);
    await this.env.setMany({
      [GRUB_VARS.slot]: good,
      [GRUB_VARS.good]: good,
      [GRUB_VARS.upgrade]: 0,
      [GRUB_VARS.left]: this.limit,
    });
  }

  bootedSlot(): Promise<Slot> {
    return bootedSlotOf(this.opts, 'grub');
  }
}
