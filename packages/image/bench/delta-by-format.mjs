#!/usr/bin/env node
// Which filesystem makes the smallest deltas? Builds the demo 1.0.0 and 1.1.0 recipes in each
// format and measures bsdiff, xdelta3 and zstd --patch-from between them.
//   npx tsc -b && node packages/image/bench/delta-by-format.mjs [--json]
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { benchArgs } = await import(join(here, '../../../bench/args.mjs'));
const { values } = benchArgs('usage: node packages/image/bench/delta-by-format.mjs [--json]', {
  options: { json: { type: 'boolean', default: false } },
});
const json = values.json;
const image = await import(join(here, '../dist/index.js'));
const work = await mkdtemp(join(tmpdir(), 'flotilla-delta-bench-'));
const from = await image.loadRecipe(join(image.DEFAULT_RECIPES_DIR, '1.0.0/recipe.json'));
const to = await image.loadRecipe(join(image.DEFAULT_RECIPES_DIR, '1.1.0/recipe.json'));
await image.materialiseRecipe(from, join(work, 'from'));
await image.materialiseRecipe(to, join(work, 'to'));

const size = async (p) => (await stat(p)).size;
const rows = [];
const variants = [
  { format: 'ext4' },
  { format: 'ext4', sameEpoch: true },
  { format: 'squashfs' },
  { format: 'erofs' },
];
for (const v of variants) {
  const tag = `${v.format}${v.sameEpoch ? '-same-epoch' : ''}`;
  const build = (r, name) =>
    image.buildImage({
      input: join(work, name),
      output: join(work, `${tag}-${name}.img`),
      format: v.format,
      partitionSize: r.partitionSize,
      epoch: v.sameEpoch ? from.sourceDateEpoch : r.sourceDateEpoch,
      modeOverrides: r.modes,
    });
  const a = await build(from, 'from');
  const b = await build(to, 'to');
  const d = (name) => join(work, `${tag}.${name}`);
  execFileSync('bsdiff', [a.path, b.path, d('bsdiff')]);
  execFileSync('xdelta3', ['-e', '-9', '-f', '-s', a.path, b.path, d('xdelta3')]);
  execFileSync('zstd', ['-q', '-f', '-19', '--long=27', '--patch-from', a.path, b.path, '-o', d('zstd')]);
  execFileSync('zstd', ['-q', '-f', '-19', b.path, '-o', d('full.zst')]);
  rows.push({
    format: tag,
    imageBytes: b.size,
    usedBytes: b.contentBytes,
    fullZstd: await size(d('full.zst')),
    bsdiff: await size(d('bsdiff')),
    xdelta3: await size(d('xdelta3')),
    zstdPatchFrom: await size(d('zstd')),
  });
}
await rm(work, { recursive: true, force: true });
if (json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
else {
  const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
  console.log('| format | image | full image, zstd -19 | bsdiff | xdelta3 -9 | zstd -19 --patch-from |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.format} | ${kib(r.imageBytes)} | ${kib(r.fullZstd)} | ${kib(r.bsdiff)} | ${kib(r.xdelta3)} | ${kib(r.zstdPatchFrom)} |`,
    );
}
