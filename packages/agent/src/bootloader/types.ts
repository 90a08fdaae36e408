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
  /** Mark `slot` good: it becomes primary and fallback, the trial ends. */
  commit(slot: Slot): Promise<void>;
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
