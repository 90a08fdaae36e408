import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ESP_FAT_LABEL,
  factoryBootVars,
  GRUB_COMMITTED_ENV_PATH,
  GRUB_COMMITTED_VAR,
  GRUB_EFI_PATH,
  GRUB_ENV_PATH,
  renderGrubCfg,
  serializeGrubEnv,
} from '@flotilla/protocol';
import { ImageError } from './errors.js';
import { runTool } from './exec.js';
import { IMAGE_LIMITS } from './limits.js';

/**
 * GRUB modules built into BOOTX64.EFI: the ESP carries no module directory, so everything the
 * generated grub.cfg runs must be inside the image (GPT, FAT for grubenv, ext4 for the slots).
 */
export const GRUB_EFI_MODULES = [
  'part_gpt',
  'fat',
  'ext2',
  'normal',
  'linux',
  'echo',
  'test',
  'regexp',
  'loadenv',
  'serial',
  'terminal',
  'efi_gop',
  'all_video',
  'gzio',
  'reboot',
  'halt',
  'configfile',
  'sleep',
];

/** Where grub-efi-amd64-bin keeps the x86_64 EFI modules. */
const GRUB_X86_64_EFI_DIR = '/usr/lib/grub/x86_64-efi';

/**
 * The EFI system partition of an x86_64 factory disk, made without mounting (mkfs.vfat + mtools):
 * /EFI/BOOT/BOOTX64.EFI (grub-mkimage, prefix /EFI/BOOT: GRUB reads grub.cfg from beside itself),
 * /EFI/BOOT/grub.cfg (generated from the boot contract) and /EFI/BOOT/grubenv (slot A committed).
 */
export async function buildEsp(
  work: string,
  // the ESP's place in the disk plan (disk-image.ts, which imports this module)
  part: { size: number; guid: string },
): Promise<string> {
  const dir = join(work, 'esp');
  await mkdir(dir, { recursive: true });
  const efi = join(dir, 'BOOTX64.EFI');
  const bootDir = GRUB_EFI_PATH.slice(0, GRUB_EFI_PATH.lastIndexOf('/'));
  await runTool('grub-mkimage', [
    '-O',
    'x86_64-efi',
    '-d',
    GRUB_X86_64_EFI_DIR,
    '-p',
    bootDir,
    '-o',
    efi,
    ...GRUB_EFI_MODULES,
  ]);
  const cfg = join(dir, 'grub.cfg');
  await writeFile(cfg, renderGrubCfg());
  const env = join(dir, 'grubenv');
  const block = serializeGrubEnv(factoryBootVars('A'));
  if (!block) throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', 'factory grubenv does not fit 1 KiB');
  await writeFile(env, block);
  // the committed slot grub.cfg boots when grubenv is torn (GRUB never writes this file)
  const committed = join(dir, 'grubenv-committed');
  await writeFile(committed, serializeGrubEnv({ [GRUB_COMMITTED_VAR]: 'A' })!);
  const epoch = new Date(IMAGE_LIMITS.defaultSourceDateEpoch * 1000);
  for (const f of [efi, cfg, env, committed]) await utimes(f, epoch, epoch);

  const img = join(work, 'esp.img');
  const volumeId = part.guid.replace(/-/g, '').slice(0, 8);
  await runTool('mkfs.vfat', [
    '-C',
    '--invariant',
    '-n',
    ESP_FAT_LABEL,
    '-i',
    volumeId,
    img,
    String(part.size / 1024),
  ]);
  const mtools = {
    env: { MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(IMAGE_LIMITS.defaultSourceDateEpoch) },
  };
  let path = '';
  for (const segment of bootDir.split('/').filter(Boolean)) {
    path += `/${segment}`;
    await runTool('mmd', ['-i', img, `::${path}`], mtools);
  }
  const envName = GRUB_ENV_PATH.slice(GRUB_ENV_PATH.lastIndexOf('/') + 1);
  const efiName = GRUB_EFI_PATH.slice(GRUB_EFI_PATH.lastIndexOf('/') + 1);
  await runTool('mcopy', ['-i', img, '-m', efi, `::${bootDir}/${efiName}`], mtools);
  await runTool('mcopy', ['-i', img, '-m', cfg, `::${bootDir}/grub.cfg`], mtools);
  await runTool('mcopy', ['-i', img, '-m', env, `::${bootDir}/${envName}`], mtools);
  await runTool('mcopy', ['-i', img, '-m', committed, `::${GRUB_COMMITTED_ENV_PATH}`], mtools);
  return img;
}
