import type { Slot } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';
import { type Bootloader, type BootState, type CommitOptions, parseSlot } from './types.js';
import { bootedFromCmdline, floorOf } from './uboot.js';

/**
 * GRUB cannot do arithmetic, so the trial counter counts down through string compares in the
 * shipped grub.cfg (packages/agent/bootloader-scripts/grub.cfg). Same names as U-Boot where the
 * meaning is the same: flotilla_slot, flotilla_good_slot, upgrade_available; `boot_left` replaces
 * bootcount (attempts left), `bootlimit` is kept for reporting.
 */
export const GRUB_VARS = {
  slot: 'flotilla_slot',
  good: 'flotilla_good_slot',
  upgrade: 'upgrade_available',
  left: 'boot_left',
  limit: 'bootlimit',
  floor: 'flotilla_secver',
} as const;

export interface GrubOptions {
  /** The grubenv file (e.g. /boot/grub/grubenv). */
  envFile: string;
  /** Trial attempts before fallback (1..9: grub.cfg counts down with string compares). */
  bootlimit?: number;
  cmdlineFile?: string;
  grubEditenv?: string;
  timeoutMs?: number;
}

export class GrubEnv {
  constructor(readonly opts: GrubOptions) {}

  private async run(args: string[]): Promise<string> {
    const r = await execBounded([this.opts.grubEditenv ?? 'grub-editenv', this.opts.envFile, ...args], {
      timeoutMs: this.opts.timeoutMs ?? 10_000,
    }).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', 'grub-editenv', { cause, component: 'grub' });
    });
    if (r.code !== 0)
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `grub-editenv ${args[0]}: ${r.output.trim()}`, {
        component: 'grub',
      });
    return r.stdout;
  }

  async readAll(): Promise<Record<string, string>> {
    const vars: Record<string, string> = {};
    for (const line of (await this.run(['list'])).split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return vars;
  }

  /** grub-editenv rewrites its 1 KiB block once per call: all variables in one write. */
  async setMany(vars: Record<string, string | number>): Promise<void> {
    for (const [k, v] of Object.entries(vars)) {
      if (!/^[A-Za-z0-9_]+$/.test(k) || /[\n\r]/.test(String(v)))
        throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `refusing variable ${k}`, {
          component: 'grub',
        });
    }
    await this.run(['set', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)]);
  }
}

export class GrubBootloader implements Bootloader {
  readonly kind = 'grub' as const;
  readonly env: GrubEnv;
  constructor(readonly opts: GrubOptions) {
    this.env = new GrubEnv(opts);
    const limit = opts.bootlimit ?? 3;
    if (!Number.isInteger(limit) || limit < 1 || limit > 9)
      throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', 'grub bootlimit must be 1..9');
  }

  private get limit(): number {
    return this.opts.bootlimit ?? 3;
  }

  async read(): Promise<BootState> {
    const v = await this.env.readAll();
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

  commit(slot: Slot, opts: CommitOptions = {}): Promise<void> {
    return this.env.setMany({
      [GRUB_VARS.slot]: slot,
      [GRUB_VARS.good]: slot,
      [GRUB_VARS.upgrade]: 0,
      [GRUB_VARS.left]: this.limit,
      ...(opts.securityFloor !== undefined ? { [GRUB_VARS.floor]: opts.securityFloor } : {}),
    });
  }

  abortTrial(good: Slot): Promise<void> {
    return this.env.setMany({
      [GRUB_VARS.slot]: good,
      [GRUB_VARS.good]: good,
      [GRUB_VARS.upgrade]: 0,
      [GRUB_VARS.left]: this.limit,
    });
  }

  bootedSlot(): Promise<Slot> {
    return bootedFromCmdline(this.opts.cmdlineFile ?? '/proc/cmdline', 'grub');
  }
}
