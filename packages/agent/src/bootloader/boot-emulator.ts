import { writeFile } from 'node:fs/promises';
import { type BootArch, decideGrubBoot, decideUbootBoot, kernelCmdline, type Slot } from '@flotilla/protocol';
import type { GrubEnv } from './grub.js';
import type { UbootEnv } from './uboot.js';

/**
 * There is no bootloader on a test machine, so these functions do at "power-on" what the board's
 * bootloader does, over the *real* environment files (fw_setenv / grubenv formats): the decision
 * of the boot contract (decideUbootBoot / decideGrubBoot in @flotilla/protocol), which is also
 * what the generated boot.cmd and grub.cfg do (checked by their tests and the QEMU scenarios).
 */
export async function emulateUbootBoot(
  env: UbootEnv,
  cmdlineFile: string,
  arch: BootArch = 'aarch64',
): Promise<Slot> {
  const decision = decideUbootBoot(await env.readAll());
  if (Object.keys(decision.save).length) await env.setMany(decision.save);
  await writeFile(cmdlineFile, `${kernelCmdline(arch, decision.slot)}\n`);
  return decision.slot;
}

export async function emulateGrubBoot(
  env: GrubEnv,
  cmdlineFile: string,
  arch: BootArch = 'x86_64',
): Promise<Slot> {
  // As grub.cfg: a torn grubenv loads nothing whole and boots grubenv-committed's slot.
  const decision = decideGrubBoot((await env.readAllOrTorn()) ?? {}, await env.readCommitted());
  if (Object.keys(decision.save).length) await env.setMany(decision.save);
  await writeFile(cmdlineFile, `BOOT_IMAGE=/boot/vmlinuz ${kernelCmdline(arch, decision.slot)}\n`);
  return decision.slot;
}
