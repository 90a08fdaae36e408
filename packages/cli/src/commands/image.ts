import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import {
  buildFirmwareSet,
  buildImage,
  DEFAULT_IMAGE_FORMAT,
  formatBytes,
  IMAGE_FORMATS,
  ImageError,
  loadTrustRoot,
  parseSize,
  readFileFromImage,
} from '@flotilla/image';
import type { ImageFormat, RootMetadata } from '@flotilla/protocol';
import type { Command } from 'commander';
import { count, printResult } from '../output.js';
import { createProgress, type Progress } from '../progress.js';

/** A bar that advances one step per named phase of a multi-step job (its label shows the phase). */
export function phaseBar(
  label: string,
  phases: number,
  json: boolean,
): { phase(name: string): void; stop(): void } {
  let done = 0;
  let bar: Progress | undefined;
  return {
    phase(name) {
      bar?.stop();
      bar = createProgress(`${label}: ${name.padEnd(14)}`, phases, { json });
      bar.update(Math.min(++done, phases));
    },
    stop() {
      bar?.stop();
    },
  };
}

/** A byte-count bar that restarts when the phase changes. */
export function byteBars(json: boolean): {
  update(phase: string, done: number, total: number): void;
  stop(): void;
} {
  let current = '';
  let bar: Progress | undefined;
  return {
    update(phase, done, total) {
      if (phase !== current) {
        bar?.stop();
        current = phase;
        bar = createProgress(phase.padEnd(10), total, { json });
      }
      bar?.update(done, total);
    },
    stop() {
      bar?.stop();
    },
  };
}

export function parseFormat(text: string): ImageFormat {
  if (!IMAGE_FORMATS.includes(text as ImageFormat))
    throw new ImageError(
      'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      `--format ${text} (use ${IMAGE_FORMATS.join(', ')})`,
    );
  return text as ImageFormat;
}

export function parseIntOption(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${what} ${text}`);
  return Number(text);
}

export async function trustRoot(path: string): Promise<RootMetadata> {
  return loadTrustRoot(path, new Date());
}

/** `git rev-parse HEAD` of the repository holding `path` (+ `-dirty` if anything under it changed), or 'unknown'. */
export function sourceRevisionOf(path: string): string {
  const run = (args: string[]) =>
    spawnSync('git', ['-C', dirname(path), ...args], { encoding: 'utf8', timeout: 5000 });
  const head = run(['rev-parse', 'HEAD']);
  if (head.status !== 0) return 'unknown';
  const dirty = run(['status', '--porcelain', '--', path]);
  return `${head.stdout.trim()}${dirty.status === 0 && dirty.stdout.trim() ? '-dirty' : ''}`;
}

/** `flotilla image build|cat|firmware`: reproducible partition images. */
export function registerImageCommands(program: Command): void {
  const image = program
    .command('image')
    .description('build reproducible partition images (ext4, squashfs, erofs, raw)');

  image
    .command('build')
    .description('build a partition image from a rootfs directory or tarball (or pass a raw image through)')
    .requiredOption(
      '--rootfs <path>',
      'rootfs directory, .tar/.tar.gz/.tar.zst/.tar.xz, or an image file with --format raw',
    )
    .requiredOption('-o, --out <file>', 'image file to write (atomically)')
    .option('--format <fs>', `ext4, squashfs, erofs or raw`, DEFAULT_IMAGE_FORMAT)
    .option('--size <bytes>', 'partition size, e.g. 8M (ext4 fills it; others must fit)', '64M')
    .option('--epoch <seconds>', 'timestamp put on every file (default $SOURCE_DATE_EPOCH or 2024-01-01)')
    .option('--uuid <uuid>', 'filesystem UUID (default: derived from the label)')
    .option('--label <label>', 'filesystem label', 'rootfs')
    .option('--pad', 'pad squashfs/erofs/raw images to the partition size')
    .option('--preserve-modes', 'keep file modes as they are (default: 0644/0755 by the execute bit)')
    .option('--json', 'print a JSON summary')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const json = Boolean(opts.json);
      const started = Date.now();
      const bar = phaseBar('image build', 4, json);
      const epochText = (opts.epoch as string | undefined) ?? process.env.SOURCE_DATE_EPOCH;
      try {
        const built = await buildImage({
          input: String(opts.rootfs),
          output: String(opts.out),
          format: parseFormat(String(opts.format)),
          partitionSize: parseSize(String(opts.size), '--size'),
          epoch: parseIntOption(epochText, '--epoch'),
          uuid: opts.uuid as string | undefined,
          label: String(opts.label),
          pad: Boolean(opts.pad),
          modes: opts.preserveModes ? 'preserve' : 'canonical',
          onProgress: (phase) => bar.phase(phase),
        });
        bar.stop();
        const summary = { ok: true, ...built, durationMs: Date.now() - started };
        printResult(json, summary, () =>
          [
            `built ${built.path}: ${built.format}, ${formatBytes(built.size)} (partition ${formatBytes(built.partitionSize)})`,
            `  sha256 ${built.sha256}`,
            `  ${count(built.files, 'entry', 'entries')}, ${formatBytes(built.contentBytes)} of file content, tree ${built.treeDigest?.slice(0, 16) ?? '–'}…`,
            `  epoch ${built.epoch}${built.uuid ? `, uuid ${built.uuid}` : ''}, ${(summary.durationMs / 1000).toFixed(1)} s`,
          ].join('\n'),
        );
      } finally {
        bar.stop();
      }
    });

  image
    .command('cat')
    .description('print one file from inside an image without mounting it')
    .argument('<image>', 'image file (or a slot holding one)')
    .argument('<path>', 'absolute path inside the image')
    .option('--format <fs>', 'ext4, squashfs or erofs', DEFAULT_IMAGE_FORMAT)
    .action(async (img: string, path: string, opts: { format: string }) => {
      process.stdout.write(await readFileFromImage(img, parseFormat(opts.format), path));
    });

  image
    .command('firmware')
    .description('build the demo firmware set (recipes → images, signed manifests, SBOMs, bundles)')
    .requiredOption('--keys <dir>', 'keys directory from `flotilla keys init` (release and recovery keys)')
    .requiredOption('-o, --out <dir>', 'output directory')
    .option('--recipes <dir>', 'recipes directory (default: firmware-images/recipes)')
    .option('--only <ids>', 'comma-separated recipe ids')
    .option('--json', 'print a JSON summary')
    .action(async (opts: { keys: string; out: string; recipes?: string; only?: string; json?: boolean }) => {
      const json = Boolean(opts.json);
      const bar = phaseBar('firmware', 8, json);
      try {
        const set = await buildFirmwareSet({
          keysDir: opts.keys,
          outDir: opts.out,
          recipesDir: opts.recipes,
          only: opts.only?.split(','),
          onProgress: (id, phase) => bar.phase(`${id} ${phase}`),
        });
        bar.stop();
        const releases = set.releases.map(({ manifest: _m, ...r }) => r);
        printResult(json, { ok: true, outDir: set.outDir, releases }, () =>
          [
            `built ${count(releases.length, 'release')} in ${set.outDir}`,
            ...releases.map(
              (r) =>
                `  ${r.id.padEnd(10)} ${r.kind.padEnd(8)} ${r.version.padEnd(16)} ${r.format} ${formatBytes(r.imageSize)}  ${r.imageSha256.slice(0, 16)}…`,
            ),
          ].join('\n'),
        );
      } finally {
        bar.stop();
      }
    });
}
