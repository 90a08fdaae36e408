import { BOOT_VARS, type Slot } from '@flotilla/protocol';
import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';
import { readTextIfExists } from '../fs-util.js';
import {
  type Bootloader,
  type BootState,
  type CommitOptions,
  parseFloor,
  parseSlot,
  slotFromCmdline,
} from './types.js';

/**
 * The variable contract with the board's U-Boot environment comes from the boot contract
 * (@flotilla/protocol boot-contract.ts): the generated boot.cmd counts `bootcount` up with setexpr
 * while `upgrade_available=1` and falls back to `flotilla_good_slot` past `bootlimit`, on a stock
 * U-Boot (no CONFIG_BOOTCOUNT_LIMIT needed).
 */
export const UBOOT_VARS = {
  slot: BOOT_VARS.slot,
  good: BOOT_VARS.good,
  upgrade: BOOT_VARS.upgrade,
  count: BOOT_VARS.count,
  limit: BOOT_VARS.limit,
  floor: BOOT_VARS.floor,
} as const;

export interface UbootOptions {
  /** fw_env.config naming the environment (device or file, offset, size; two lines if redundant). */
  configFile: string;
  /** Where the booted slot is read from (the real one is /proc/cmdline). */
  cmdlineFile?: string;
  fwPrintenv?: string;
  fwSetenv?: string;
  timeoutMs?: number;
}

/** Reads and writes the U-Boot environment with the real libubootenv tools. */
export class UbootEnv {
  constructor(readonly opts: UbootOptions) {}

  async readAll(): Promise<Record<string, string>> {
    const r = await execBounded([this.opts.fwPrintenv ?? 'fw_printenv', '-c', this.opts.configFile], {
      timeoutMs: this.opts.timeoutMs ?? 10_000,
      maxOutputBytes: 256 * 1024,
    }).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', 'fw_printenv', { cause, component: 'uboot' });
    });
    if (r.code !== 0)
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `fw_printenv: ${r.output.trim()}`, {
        component: 'uboot',
      });
    const vars: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return vars;
  }

  /** One `fw_setenv -s` run: all variables land in a single environment write. */
  async setMany(vars: Record<string, string | number>): Promise<void> {
    for (const [k, v] of Object.entries(vars)) {
      if (!/^[A-Za-z0-9_.]+$/.test(k) || /[\n\r]/.test(String(v)))
        throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `refusing variable ${k}`, {
          component: 'uboot',
        });
    }
    const script = Object.entries(vars)
      .map(([k, v]) => `${k}=${v}\n`)
      .join('');
    const r = await execBounded([this.opts.fwSetenv ?? 'fw_setenv', '-c', this.opts.configFile, '-s', '-'], {
      input: script,
      timeoutMs: this.opts.timeoutMs ?? 10_000,
    }).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', 'fw_setenv', { cause, component: 'uboot' });
    });
    if (r.code !== 0)
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `fw_setenv: ${r.output.trim()}`, {
        component: 'uboot',
      });
  }
}

export class UbootBootloader implements Bootloader {
  readonly kind = 'uboot' as const;
  readonly env: UbootEnv;
  constructor(readonly opts: UbootOptions) {
    this.env = new UbootEnv(opts);
  }

  async read(): Promise<BootState> {
    const v = await this.env.readAll();
    const primary = parseSlot(v[UBOOT_VARS.slot]);
    if (!primary)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_BOOTLOADER',
        `${UBOOT_VARS.slot} is '${v[UBOOT_VARS.slot] ?? ''}'`,
        {
          component: 'uboot',
        },
      );
    return {
      primary,
      good: parseSlot(v[UBOOT_VARS.good]) ?? primary,
      trial: v[UBOOT_VARS.upgrade] === '1',
      // U-Boot's setexpr writes the count in hex
      attempts: Number.parseInt(v[UBOOT_VARS.count] ?? '0', 16) || 0,
      limit: Number.parseInt(v[UBOOT_VARS.limit] ?? '0', 10) || 0,
      ...floorOf(v[UBOOT_VARS.floor]),
    };
  }

  armTrial(slot: Slot, good: Slot): Promise<void> {
    return this.env.setMany({
      [UBOOT_VARS.good]: good,
      [UBOOT_VARS.count]: 0,
      [UBOOT_VARS.slot]: slot,
      [UBOOT_VARS.upgrade]: 1,
    });
  }

  commit(slot: Slot, opts: CommitOptions = {}): Promise<void> {
    return this.env.setMany({
      [UBOOT_VARS.slot]: slot,
      [UBOOT_VARS.good]: slot,
      [UBOOT_VARS.upgrade]: 0,
      [UBOOT_VARS.count]: 0,
      ...(opts.securityFloor !== undefined ? { [UBOOT_VARS.floor]: opts.securityFloor } : {}),
    });
  }

  abortTrial(good: Slot): Promise<void> {
    return this.env.setMany({
      [UBOOT_VARS.slot]: good,
      [UBOOT_VARS.good]: good,
      [UBOOT_VARS.upgrade]: 0,
      [UBOOT_VARS.count]: 0,
    });
  }

  bootedSlot(): Promise<Slot> {
    return bootedFromCmdline(this.opts.cmdlineFile ?? '/proc/cmdline', 'uboot');
  }
}

/** `{ securityFloor }` when the variable holds a valid floor, else nothing. */
export function floorOf(v: string | undefined): { securityFloor?: number } {
  const floor = parseFloor(v);
  return floor !== undefined ? { securityFloor: floor } : {};
}

export async function bootedFromCmdline(file: string, component: string): Promise<Slot> {
  const text = await readTextIfExists(file);
  const slot = text === null ? null : slotFromCmdline(text);
  if (!slot)
    throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `no flotilla.slot= in ${file}`, { component });
  return slot;
}
