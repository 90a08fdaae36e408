import { writeFile } from 'node:fs/promises';
import type { Slot } from '@flotilla/protocol';
import type { GrubEnv } from './grub.js';
import { parseSlot } from './types.js';
import type { UbootEnv } from './uboot.js';

/**
 * There is no bootloader on a test machine, so these functions do at "power-on" what the board's
 * bootloader does, over the *real* environment files (fw_setenv / grub-editenv formats). The
 * contract tests and the simulator use them; the boot decision they implement is the one the
 * shipped U-Boot environment and grub.cfg implement (docs/agent.md, bootloader-scripts/).
 */

/**
 * U-Boot with CONFIG_BOOTCOUNT_LIMIT and BOOTCOUNT_ENV: while upgrade_available=1 every boot
 * increments bootcount (and saves it); bootcount > bootlimit runs altbootcmd instead of bootcmd.
 * altbootcmd is interpreted from the environment (setenv / saveenv / run bootcmd only), so a
 * wrong altbootcmd in the environment fails the test instead of being papered over.
 */
export async function emulateUbootBoot(env: UbootEnv, cmdlineFile: string): Promise<Slot> {
  const vars = await env.readAll();
  const changed: Record<string, string> = {};
  const set = (k: string, v: string) => {
    vars[k] = v;
    changed[k] = v;
  };
  const save = async () => {
    if (Object.keys(changed).length) await env.setMany(changed);
    for (const k of Object.keys(changed)) delete changed[k];
  };
  let script = 'run bootcmd';
  if (vars.upgrade_available === '1') {
    const count = (Number.parseInt(vars.bootcount ?? '0', 10) || 0) + 1;
    set('bootcount', String(count));
    await save();
    const limit = Number.parseInt(vars.bootlimit ?? '', 10);
    if (Number.isFinite(limit) && count > limit) {
      if (!vars.altbootcmd)
        throw new Error('bootcount > bootlimit and no altbootcmd: U-Boot drops to its prompt');
      script = vars.altbootcmd;
    }
  }
  for (const raw of script.split(';')) {
    const cmd = raw.trim().replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, name: string) => vars[name] ?? '');
    if (cmd === '') continue;
    const [verb, name, ...rest] = cmd.split(/\s+/);
    if (verb === 'setenv' && name) set(name, rest.join(' '));
    else if (verb === 'saveenv') await save();
    else if (verb === 'run' && name === 'bootcmd') break;
    else throw new Error(`boot emulator does not know '${cmd}'`);
  }
  const slot = parseSlot(vars.flotilla_slot);
  if (!slot) throw new Error(`flotilla_slot is '${vars.flotilla_slot ?? ''}': nothing to boot`);
  await writeFile(cmdlineFile, `console=ttyS0 root=PARTLABEL=rootfs_${slot} flotilla.slot=${slot}\n`);
  return slot;
}

/** The decision of bootloader-scripts/grub.cfg: count the trial down, fall back at zero, boot. */
export async function emulateGrubBoot(env: GrubEnv, cmdlineFile: string): Promise<Slot> {
  const v = await env.readAll();
  if (v.upgrade_available === '1') {
    const left = v.boot_left ?? '0';
    if (left === '0' || !/^[1-9]$/.test(left)) {
      await env.setMany({ flotilla_slot: v.flotilla_good_slot ?? '', upgrade_available: 0 });
      v.flotilla_slot = v.flotilla_good_slot ?? '';
    } else {
      await env.setMany({ boot_left: Number(left) - 1 });
    }
  }
  const slot = parseSlot(v.flotilla_slot);
  if (!slot) throw new Error(`flotilla_slot is '${v.flotilla_slot ?? ''}': nothing to boot`);
  await writeFile(cmdlineFile, `BOOT_IMAGE=/vmlinuz root=PARTLABEL=rootfs_${slot} flotilla.slot=${slot}\n`);
  return slot;
}
