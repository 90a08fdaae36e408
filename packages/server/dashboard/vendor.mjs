#!/usr/bin/env node
// Copies the exact ESM builds of the dashboard's runtime libraries into ./vendor, so the page
// loads them from the server itself (no CDN, no bundler). `--check` fails when the committed copies
// differ from the installed packages (run after bumping a version). Only a trailing
// `//# sourceMappingURL` comment is removed on the way.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
// The packages are installed for the workspace test package (see docs/dashboard.md).
const require = createRequire(join(here, '../../../test/package.json'));
// Some packages do not export ./package.json: resolve the main entry and walk up to the package root.
function pkgDir(name) {
  let dir = dirname(require.resolve(name));
  while (!existsSync(join(dir, 'package.json')) || readJson(join(dir, 'package.json')).name !== name) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the package root of ${name}`);
    dir = up;
  }
  return dir;
}

const FILES = [
  { pkg: 'preact', from: 'dist/preact.module.js', to: 'preact.module.js' },
  { pkg: 'preact', from: 'hooks/dist/hooks.module.js', to: 'hooks.module.js' },
  { pkg: 'htm', from: 'dist/htm.module.js', to: 'htm.module.js' },
  { pkg: 'eventsource-parser', from: 'dist/index.js', to: 'eventsource-parser/index.js' },
  { pkg: 'eventsource-parser', from: 'dist/parse.js', to: 'eventsource-parser/parse.js' },
  { pkg: 'eventsource-parser', from: 'dist/errors.js', to: 'eventsource-parser/errors.js' },
];

const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
// The source maps (and the sources they name) are not shipped: drop the comment that points at
// them, so the browser does not ask the server for files it does not have.
const vendored = (src) => readFileSync(src, 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
// strict: a mistyped --check must not rewrite the vendored files
const check = parseArgs({ options: { check: { type: 'boolean', default: false } }, strict: true }).values
  .check;
const out = join(here, 'vendor');
mkdirSync(join(out, 'eventsource-parser'), { recursive: true });
let stale = 0;
for (const f of FILES) {
  const dir = pkgDir(f.pkg);
  const version = readJson(join(dir, 'package.json')).version;
  const src = join(dir, f.from);
  const dst = join(out, f.to);
  if (check) {
    let same = false;
    try {
      same = sha(vendored(src)) === sha(readFileSync(dst, 'utf8'));
    } catch {}
    if (!same) stale++;
    process.stdout.write(`${same ? 'ok   ' : 'STALE'} vendor/${f.to} (${f.pkg}@${version})\n`);
  } else {
    writeFileSync(dst, vendored(src));
    process.stdout.write(`copied ${f.pkg}@${version} ${f.from} -> vendor/${f.to}\n`);
  }
}
process.exitCode = stale ? 1 : 0;
