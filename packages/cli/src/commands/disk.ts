import { buildDiskImage, formatBytes } from '@flotilla/image';
import type { Command } from 'commander';
import { printResult } from '../output.js';
import { type DiskLayoutOptions, diskLayoutArgs, releaseSummary } from './bundle-options.js';
import { byteBars } from './image.js';

/** `flotilla disk build`: a whole-disk factory/recovery image (GPT, U-Boot env, slot A, slot B, data). */
export function registerDiskCommands(program: Command): void {
  const disk = program.command('disk').description('factory and recovery disk images for eMMC or SD cards');

  disk
    .command('build')
    .description(
      'write a GPT disk image from a verified release bundle; the boot environment points at slot A',
    )
    .requiredOption('--bundle <file>', 'release (or recovery) .flot bundle')
    .requiredOption('--root <file>', 'trusted root.json')
    .requiredOption('-o, --out <file>', 'disk image to write (atomically)')
    .option('--slot-size <bytes>', 'size of each root slot (default: image size rounded up to 1 MiB)')
    .option('--data-size <bytes>', 'size of the data partition', '16M')
    .option(
      '--arch <arch>',
      'bootable disk for x86_64 (ESP + GRUB EFI) or aarch64 (U-Boot env); the rootfs must carry /boot/vmlinuz',
    )
    .option(
      '--uboot-initial-env <file>',
      "aarch64: the board's U-Boot default environment (u-boot-initial-env of its U-Boot build)",
    )
    .option('--disk-size <bytes>', 'size of the target disk: the layout must fit, data takes the rest')
    .option('--recovery', 'accept a recovery image (signed by the recovery role)')
    .option('--json', 'print a JSON summary')
    .action(async (opts: DiskLayoutOptions & { out: string; json?: boolean }) => {
      const json = Boolean(opts.json);
      const bars = byteBars(json);
      try {
        const r = await buildDiskImage({
          ...(await diskLayoutArgs(opts)),
          output: opts.out,
          onProgress: (d, t) => bars.update('slot A', d, t),
        });
        bars.stop();
        const summary = {
          ok: true,
          out: r.path,
          size: r.size,
          release: releaseSummary(r.manifest),
          diskGuid: r.plan.diskGuid,
          partitions: r.plan.partitions,
        };
        printResult(json, summary, () =>
          [
            `wrote ${r.path}: ${formatBytes(r.size)}, GPT, ${r.manifest.name} ${r.manifest.version} (${r.manifest.kind}) in slot A`,
            ...r.plan.partitions.map(
              (p) =>
                `  ${String(p.index).padStart(2)} ${p.name.padEnd(10)} at ${formatBytes(p.offset).padStart(10)}  ${formatBytes(p.size)}`,
            ),
            '  boot environment: flotilla_slot=A, upgrade_available=0, bootcount=0, bootlimit=3',
            `  write it with: flotilla flash --bundle ${opts.bundle} --root ${opts.root} --target /dev/mmcblkN  (or dd)`,
          ].join('\n'),
        );
      } finally {
        bars.stop();
      }
    });
}
