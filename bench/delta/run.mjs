// Delta benchmark: our codec side by side with bsdiff, xdelta3 and zstd --patch-from on real
// old/new pairs (see corpus.mjs). Usage (after `npx tsc -b`):
//   node bench/delta/run.mjs [--only=id,id] [--tools=ours,bsdiff,xdelta3,zstd] [--big]
// Results merge into bench/out/delta/results.json; the tables go to stdout and results.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, usageError } from '../args.mjs';
import { buildCorpus, OUT, sha256File } from './corpus.mjs';

const USAGE = 'usage: node bench/delta/run.mjs [--only=id,id] [--tools=ours,bsdiff,xdelta3,zstd] [--big]';
const { values: args } = benchArgs(USAGE, {
  options: { only: { type: 'string' }, tools: { type: 'string' }, big: { type: 'boolean', default: false } },
});
const CLI = fileURLToPath(new URL('../../packages/cli/dist/bin/flotilla.js', import.meta.url));
const LIB_APPLY = fileURLToPath(new URL('./apply-lib.mjs', import.meta.url));
const TIMEOUT_MS = 900_000;
const WORK = join(OUT, 'work');
const RESULTS = join(OUT, 'results.json');

if (!existsSync(CLI)) {
  console.error('packages/cli/dist is missing: run `npx tsc -b` first');
  process.exit(1);
}

const zstdLong = (size) => Math.max(27, Math.ceil(Math.log2(size + 1)));

/** Each tool: how to create and apply, as the shell commands a user would type. */
const TOOLS = {
  ours: {
    create: (o, n, d) => [process.execPath, CLI, 'delta', 'create', o, n, d, '--json'],
    apply: (o, d, out) => [process.execPath, CLI, 'delta', 'apply', o, d, out, '--json'],
    applyLib: (o, d, out) => [process.execPath, LIB_APPLY, o, d, out],
  },
  bsdiff: {
    create: (o, n, d) => ['bsdiff', o, n, d],
    apply: (o, d, out) => ['bspatch', o, out, d],
  },
  xdelta3: {
    create: (o, n, d) => ['xdelta3', '-9', '-f', '-e', '-s', o, n, d],
    apply: (o, d, out) => ['xdelta3', '-d', '-f', '-s', o, d, out],
  },
  zstd: {
    create: (o, n, d, size) => [
      'zstd',
      '-q',
      '-f',
      '-19',
      `--long=${zstdLong(size)}`,
      `--patch-from=${o}`,
      n,
      '-o',
      d,
    ],
    apply: (o, d, out, size) => [
      'zstd',
      '-q',
      '-f',
      '-d',
      `--long=${zstdLong(size)}`,
      `--patch-from=${o}`,
      d,
      '-o',
      out,
    ],
  },
};

/** Runs a command under /usr/bin/time -v: wall seconds and peak RSS of the whole process. */
function measure(cmd) {
  const timeFile = join(WORK, 'time.txt');
  const r = spawnSync('/usr/bin/time', ['-v', '-o', timeFile, ...cmd], {
    encoding: 'utf8',
    timeout: TIMEOUT_MS,
    maxBuffer: 64 << 20,
  });
  if (r.error || r.status !== 0) {
    return { ok: false, error: r.error?.message ?? `exit ${r.status}: ${(r.stderr || '').slice(0, 300)}` };
  }
  const t = readFileSync(timeFile, 'utf8');
  const wall = t.match(/Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)/);
  const seconds = wall ? Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]) : Number.NaN;
  const rssKb = Number(t.match(/Maximum resident set size \(kbytes\): (\d+)/)?.[1]);
  // CPU time is what survives a busy machine: wall time on a shared box is mostly waiting.
  const cpu = (label) => Number(t.match(new RegExp(`${label} time \\(seconds\\): ([\\d.]+)`))?.[1]);
  const cpuSeconds = cpu('User') + cpu('System');
  return { ok: true, seconds, cpuSeconds, rssMiB: rssKb / 1024, stdout: r.stdout };
}

function runTool(pair, name) {
  const tool = TOOLS[name];
  const delta = join(WORK, `${pair.id}.${name}.delta`);
  const out = join(WORK, `${pair.id}.${name}.out`);
  rmSync(delta, { force: true });
  rmSync(out, { force: true });
  console.error(`[bench] ${pair.id}: ${name} create`);
  const c = measure(tool.create(pair.old, pair.new, delta, pair.size));
  if (!c.ok) return { tool: name, error: `create: ${c.error}` };
  const deltaBytes = statSync(delta).size;
  console.error(`[bench] ${pair.id}: ${name} apply`);
  const a = measure(tool.apply(pair.old, delta, out, pair.size));
  if (!a.ok) return { tool: name, deltaBytes, error: `apply: ${a.error}` };
  const identical = sha256File(out) === pair.newSha256;
  rmSync(out, { force: true });
  let lib;
  if (tool.applyLib) {
    const l = measure(tool.applyLib(pair.old, delta, out));
    lib = l.ok
      ? {
          seconds: l.seconds,
          cpuSeconds: l.cpuSeconds,
          rssMiB: l.rssMiB,
          identical: sha256File(out) === pair.newSha256,
        }
      : { error: l.error };
    rmSync(out, { force: true });
  }
  rmSync(delta, { force: true });
  return {
    tool: name,
    deltaBytes,
    percent: (100 * deltaBytes) / pair.size,
    create: { seconds: c.seconds, cpuSeconds: c.cpuSeconds, rssMiB: c.rssMiB },
    apply: { seconds: a.seconds, cpuSeconds: a.cpuSeconds, rssMiB: a.rssMiB },
    applyLib: lib,
    identical,
  };
}

const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
const secs = (m) => `${fmt(m.seconds, 2)} (${fmt(m.cpuSeconds, 2)})`;

function pairTable(pair, rows) {
  const lines = [
    `### ${pair.title} — new image ${(pair.size / 2 ** 20).toFixed(2)} MiB`,
    '',
    '| tool | delta bytes | % of new | create s (cpu s) | create MiB | apply s (cpu s) | apply MiB | identical |',
    '|---|---:|---:|---:|---:|---:|---:|:---:|',
  ];
  for (const r of rows) {
    if (r.error) {
      lines.push(
        `| ${r.tool} | ${r.deltaBytes ?? '–'} | – | – | – | – | – | ${r.error.split('\n')[0].slice(0, 60)} |`,
      );
      continue;
    }
    lines.push(
      `| ${r.tool} | ${r.deltaBytes} | ${fmt(r.percent, 3)} | ${secs(r.create)} | ${fmt(r.create.rssMiB)} | ` +
        `${secs(r.apply)} | ${fmt(r.apply.rssMiB)} | ${r.identical ? 'yes' : 'NO'} |`,
    );
    if (r.applyLib && !r.applyLib.error) {
      lines.push(
        `| ${r.tool} (library apply, as the agent) | | | | | ${secs(r.applyLib)} | ${fmt(r.applyLib.rssMiB)} | ${r.applyLib.identical ? 'yes' : 'NO'} |`,
      );
    }
  }
  return lines.join('\n');
}

function formatTable(pairs, results) {
  const lines = [
    '### Image formats: the same package trees, old → new',
    '',
    '| format | image MiB | full image zstd -19 KiB | ours KiB | bsdiff KiB | xdelta3 KiB | zstd KiB |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of pairs.filter((x) => x.kind === 'filesystem' && !x.big)) {
    const by = Object.fromEntries((results[p.id] ?? []).map((r) => [r.tool, r]));
    const kib = (t) =>
      by[t]?.deltaBytes ? `${fmt(by[t].deltaBytes / 1024, 0)} (${fmt(by[t].percent, 2)} %)` : '–';
    lines.push(
      `| ${p.format} | ${fmt(p.size / 2 ** 20)} | ${fmt(p.fullZstd / 1024, 0)} | ${kib('ours')} | ${kib('bsdiff')} | ${kib('xdelta3')} | ${kib('zstd')} |`,
    );
  }
  return lines.join('\n');
}

mkdirSync(WORK, { recursive: true });
const only = typeof args.only === 'string' ? args.only.split(',') : undefined;
const tools = typeof args.tools === 'string' ? args.tools.split(',') : Object.keys(TOOLS);
const unknownTool = tools.find((t) => !(t in TOOLS));
if (unknownTool) usageError(USAGE, `unknown tool '${unknownTool}' (tools: ${Object.keys(TOOLS).join(', ')})`);
const pairs = (await buildCorpus({ big: Boolean(args.big) })).filter((p) => !only || only.includes(p.id));
const results = existsSync(RESULTS) ? JSON.parse(readFileSync(RESULTS, 'utf8')) : {};
for (const pair of pairs) {
  pair.newSha256 = sha256File(pair.new);
  if (pair.kind === 'filesystem') {
    // What a full-image download costs when compressed for transport.
    const z = join(WORK, `${pair.id}.full.zst`);
    if (!existsSync(z)) spawnSync('zstd', ['-q', '-f', '-19', '-T2', pair.new, '-o', z]);
    pair.fullZstd = statSync(z).size;
  }
  const rows = (results[pair.id] ?? []).filter((r) => !tools.includes(r.tool));
  // bsdiff and xdelta3 are not run on the 1 GiB pair: bsdiff alone would need many GiB and hours.
  for (const t of tools.filter((t) => !pair.big || t === 'ours' || t === 'zstd')) rows.push(runTool(pair, t));
  rows.sort((a, b) => Object.keys(TOOLS).indexOf(a.tool) - Object.keys(TOOLS).indexOf(b.tool));
  results[pair.id] = rows;
  writeFileSync(RESULTS, JSON.stringify(results, null, 2));
}
const all = await buildCorpus({ big: Boolean(args.big) });
for (const p of all) {
  if (p.kind === 'filesystem' && !p.fullZstd) {
    const z = join(WORK, `${p.id}.full.zst`);
    if (existsSync(z)) p.fullZstd = statSync(z).size;
  }
}
const md = [
  `## Delta benchmark (${new Date().toISOString().slice(0, 10)}, ${(await import('node:os')).cpus().length} cores)`,
  '',
  ...all.filter((p) => results[p.id]).map((p) => `${pairTable(p, results[p.id])}\n`),
  formatTable(all, results),
  '',
].join('\n');
writeFileSync(join(OUT, 'results.md'), md);
console.log(md);
