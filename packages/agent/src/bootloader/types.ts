import type { Slot } from '@flotilla/protocol';

/** What the bootloader will do next, in backend-neutral terms. */
export interface BootState {
  /** Slot the next boot starts. */
  primary: Slot;
  /** Slot the bootloader falls back to when a trial runs out of attempts. */
  good: Slot;
  /** A trial boot of `primary` is armed and not yet confirmed (U-Boot `upgrade_available=1`). */
  trial: boolean;
  /** Boot attempts the trial has used so far, and how many it may use. */
  attempts: number;
  limit: number;
  /**
   * The anti-rollback floor the last commit recorded in the environment (`flotilla_secver`), when
   * the backend keeps one: a copy that survives the loss of the data partition's state.
   */
  securityFloor?: number;
  /** Set when reading found the environment torn and rebuilt it: what was found (reported once). */
  repaired?: string;
}

export interface CommitOptions {
  /** Recorded as `flotilla_secver` in the same environment write as the commit. */
  securityFloor?: number;
}

/** `flotilla_secver` as read back from an environment: a non-negative integer, else absent. */
export function parseFloor(v: string | number | undefined): number | undefined {
  const n = typeof v === 'number' ? v : v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export type BootloaderKind = 'uboot' | 'grub' | 'file';

/**
 * One interface for every bootloader (RAUC style: the same few verbs per backend). Every write
 * is a single environment write, so a power cut leaves either the old or the new environment.
 */
export interface Bootloader {
  readonly kind: BootloaderKind;
  read(): Promise<BootState>;
  /** Next boots try `slot` up to the limit, then fall back to `good` by the bootloader alone. */
  armTrial(slot: Slot, good: Slot): Promise<void>;
  /** Mark `slot` good: it becomes primary and fallback, the trial ends (one environment write). */
  commit(slot: Slot, opts?: CommitOptions): Promise<void>;
  /** Give up a trial: `good` becomes primary again, the trial slot is not tried any more. */
  abortTrial(good: Slot): Promise<void>;
  /** The slot the running system was booted from (kernel command line, or the simulator's record). */
  bootedSlot(): Promise<Slot>;
}

export function parseSlot(v: string | undefined): Slot | null {
  return v === 'A' || v === 'B' ? v : null;
}

/** `flotilla.slot=A` on the kernel command line, put there by the bootloader's boot script. */
export function slotFromCmdline(cmdline: string, param = 'flotilla.slot'): Slot | null {
  for (const word of cmdline.trim().split(/\s+/)) {
    if (word.startsWith(`${param}=`)) return parseSlot(word.slice(param.length + 1));
  }
  return null;
}
