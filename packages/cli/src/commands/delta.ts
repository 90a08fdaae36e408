import { applyDelta, createDelta, DeltaError, type DeltaProgress, readDeltaHeader } from '@flotilla/delta';
import type { Command } from 'commander';
import { printResult } from '../output.js';
import { createProgress, type Progress } from '../progress.js';

const MiB = 1024 * 1024;

function humanBytes(n: number): string {
  if (n >= MiB) return `${(n / MiB).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '–' : `${((100 * part) / whole).toFixed(2)} %`;
}

/** One progress bar per phase, so the bar's label says what the long wait is. */
function phasedProgress(json: boolean): { onProgress(p: DeltaProgress): void; stop(): void } {
  let phase = '';
  let bar: Progress | undefined;
  return {
    onProgress(p) {
      if (p.phase !== phase) {
        bar?.stop();
        phase = p.phase;
        bar = createProgress(phase, p.total, { json });
      }
      bar?.update(p.done, p.total);
    },
    stop() {
      bar?.stop();
    },
  };
}

function parseSegmentSize(value: string): number {
  const m = /^(\d+)([KkMm]?)$/.exec(value);
  if (!m) throw new DeltaError('FLOTILLA_ERR_DELTA_BAD_ARGUMENT', `--segment-size ${value}`);
  const unit = m[2]?.toLowerCase() === 'm' ? MiB : m[2]?.toLowerCase() === 'k' ? 1024 : 1;
  return Number(m[1]) * unit;
}

/** `flotilla delta create|apply|info`: binary deltas between two images, applied as a stream. */
export function registerDeltaCommands(program: Command): void {
  const delta = program.command('delta').description('make, apply and inspect binary deltas between images');

  delta
    .command('create')
    .description('write the delta that turns image OLD into image NEW')
    .argument('<old>', 'base image (what the device runs now)')
    .argument('<new>', 'target image')
    .argument('<out>', 'delta file to write (written atomically)')
    .option('--segment-size <bytes>', 'target bytes per segment, e.g. 2M (bounds apply memory)', '2M')
    .option('--quality <q>', 'brotli quality 1–11 (11 smallest)', '11')
    .option('--json', 'print a JSON summary')
    .action(async (oldPath: string, newPath: string, out: string, opts: Record<string, string | boolean>) => {
      const json = Boolean(opts.json);
      const progress = phasedProgress(json);
      const started = Date.now();
      const quality = Number(opts.quality);
      try {
        const stats = await createDelta({
          basePath: oldPath,
          targetPath: newPath,
          outPath: out,
          segmentSize: parseSegmentSize(String(opts.segmentSize)),
          quality,
          onProgress: progress.onProgress,
        });
        progress.stop();
        const summary = { ok: true, out, ...stats, durationMs: Date.now() - started };
        printResult(json, summary, () =>
          [
            `wrote ${out}: ${humanBytes(stats.deltaSize)} (${percent(stats.deltaSize, stats.targetSize)} of the new image)`,
            `  base   ${stats.baseSha256}  ${humanBytes(stats.baseSize)}`,
            `  target ${stats.targetSha256}  ${humanBytes(stats.targetSize)}`,
            `  delta  ${stats.deltaSha256}  ${stats.segments} segments, ${stats.records} records, ` +
              `${percent(stats.copiedBytes, stats.targetSize)} rebuilt from the base, ${(summary.durationMs / 1000).toFixed(1)} s`,
          ].join('\n'),
        );
      } finally {
        progress.stop();
      }
    });

  delta
    .command('apply')
    .description('rebuild image NEW from image OLD and a delta; OUT appears only if its sha256 checks')
    .argument('<old>', 'base image, file or block device (read by position, never written)')
    .argument('<delta>', 'delta file')
    .argument('<out>', 'image to write (a file is written atomically; a block device in place)')
    .option('--expect-sha256 <hex>', 'refuse unless the delta makes this target (from the signed manifest)')
    .option('--json', 'print a JSON summary')
    .action(
      async (oldPath: string, deltaPath: string, out: string, opts: Record<string, string | boolean>) => {
        const json = Boolean(opts.json);
        const progress = phasedProgress(json);
        const started = Date.now();
        try {
          const stats = await applyDelta({
            base: oldPath,
            delta: deltaPath,
            target: out,
            expectedTargetSha256: typeof opts.expectSha256 === 'string' ? opts.expectSha256 : undefined,
            onProgress: progress.onProgress,
          });
          progress.stop();
          const summary = { ok: true, out, ...stats, durationMs: Date.now() - started };
          printResult(json, summary, () =>
            [
              `wrote ${out}: ${humanBytes(stats.targetSize)}, sha256 ${stats.targetSha256} (verified)`,
              `  from base ${stats.baseSha256} (verified) and ${humanBytes(stats.deltaSize)} of delta in ${(summary.durationMs / 1000).toFixed(1)} s`,
            ].join('\n'),
          );
        } finally {
          progress.stop();
        }
      },
    );

  delta
    .command('info')
    .description('print what a delta was made from and what it makes (header only)')
    .argument('<delta>', 'delta file')
    .option('--json', 'print JSON')
    .action(async (deltaPath: string, opts: { json?: boolean }) => {
      const h = await readDeltaHeader(deltaPath);
      printResult(Boolean(opts.json), { ok: true, ...h }, () =>
        [
          `${h.codec} format ${h.formatVersion}, segments of ${humanBytes(h.segmentSize)}`,
          `  base   ${h.baseSha256}  ${humanBytes(h.baseSize)}`,
          `  target ${h.targetSha256}  ${humanBytes(h.targetSize)}`,
        ].join('\n'),
      );
    });
}
