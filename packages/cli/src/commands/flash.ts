import { flashBundle, formatBytes } from '@flotilla/image';
import type { Command } from 'commander';
import { printResult } from '../output.js';
import { type DiskLayoutOptions, diskLayoutArgs, releaseSummary } from './bundle-options.js';
import { byteBars } from './image.js';

type FlashFlags = DiskLayoutOptions & {
  target: string;
  partition?: boolean;
  force?: boolean;
  json?: boolean;
};

/** `flotilla flash`: verify a bundle completely, then write it to a device or file and read it back. */
export function registerFlashCommands(program: Command): void {
  program
    .command('flash')
    .description(
      'verify a signed bundle, then write the factory disk layout (or, with --partition, the image) and read it back',
    )
    .requiredOption('--bundle <file>', 'release or recovery .flot bundle')
    .requiredOption('--root <file>', 'trusted root.json')
    .requiredOption(
      '--target <path>',
      'block device (e.g. /dev/mmcblk0) or file; refused if mounted or too small',
    )
    .option(
      '--partition',
      'write only the partition image (target is one slot partition; a target holding a partition table is refused)',
    )
    .option('--force', 'with --partition: write even over a partition table (destroys it)')
    .option('--slot-size <bytes>', 'disk layout: size of each root slot')
    .option('--data-size <bytes>', 'disk layout: size of the data partition', '16M')
    .option('--disk-size <bytes>', 'disk layout: size of the target disk (data takes the rest)')
    .option('--arch <arch>', 'disk layout: bootable for x86_64 (ESP + GRUB EFI) or aarch64 (U-Boot env)')
    .option(
      '--uboot-initial-env <file>',
      "aarch64: the board's U-Boot default environment (u-boot-initial-env of its U-Boot build)",
    )
    .option('--recovery', 'accept a recovery image (signed by the recovery role)')
    .option('--json', 'print a JSON summary')
    .action(async (opts: FlashFlags) => {
      const json = Boolean(opts.json);
      const bars = byteBars(json);
      const started = Date.now();
      try {
        const r = await flashBundle({
          ...(await diskLayoutArgs(opts)),
          target: opts.target,
          layout: opts.partition ? 'partition' : 'disk',
          force: Boolean(opts.force),
          onProgress: (phase, d, t) => bars.update(phase, d, t),
        });
        bars.stop();
        const m = r.manifest;
        const summary = {
          ok: true,
          target: r.target,
          kind: r.kind,
          layout: r.layout,
          bytesWritten: r.bytesWritten,
          sha256: r.sha256,
          release: releaseSummary(m),
          durationMs: Date.now() - started,
        };
        printResult(json, summary, () =>
          [
            `flashed ${m.name} ${m.version} (${m.kind}) to ${r.target} (${r.kind}, ${r.layout} layout)`,
            `  ${formatBytes(r.bytesWritten)} written and read back, sha256 ${r.sha256}`,
            `  ${(summary.durationMs / 1000).toFixed(1)} s`,
          ].join('\n'),
        );
      } finally {
        bars.stop();
      }
    });
}
