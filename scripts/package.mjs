// `pnpm package`: installable tarballs of every Flotilla package in dist-packages/ (run after
// `tsc -b`). `pnpm pack` rewrites the `workspace:` ranges to the packages' versions, so
// `npm install -g --prefix DIR dist-packages/*.tgz` resolves @flotilla/* from the tarballs
// themselves. Each tarball is checked before this script reports success.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist-packages');
const PACKAGE_DIRS = ['packages', 'simulators'];

/** pnpm as it runs this script (`npx -y pnpm@12.4.2 package`), else through npx. */
function pnpm(args) {
  // pnpm 12 is a native executable; older ones are a JavaScript file run by node.
  const execPath = process.env.npm_execpath ?? '';
  const [cmd, argv] = !/pnpm/.test(execPath)
    ? ['npx', ['-y', 'pnpm@12.4.2', ...args]]
    : /\.[cm]?js$/.test(execPath)
      ? [process.execPath, [execPath, ...args]]
      : [execPath, args];
  return execFileSync(cmd, argv, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
}

function fail(message) {
  console.error(`FLOTILLA_ERR_PACKAGE: ${message}`);
  process.exit(1);
}

/** Every workspace package that declares what it ships (`files`): the installable ones. */
function packageDirs() {
  const dirs = [];
  for (const parent of PACKAGE_DIRS)
    for (const name of readdirSync(join(root, parent)).sort()) {
      const dir = join(root, parent, name);
      let manifest;
      try {
        manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      } catch {
        continue;
      }
      if (Array.isArray(manifest.files)) dirs.push({ dir, manifest });
    }
  return dirs;
}

function tarList(tgz) {
  return execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

function tarPackageJson(tgz) {
  return JSON.parse(execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' }));
}

/** What a tarball must satisfy to install and run outside the checkout. */
function checkTarball(tgz, names) {
  const pkg = tarPackageJson(tgz);
  const files = new Set(tarList(tgz));
  const has = (path) => files.has(`package/${path.replace(/^\.\//, '')}`);
  for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies'])
    for (const [dep, range] of Object.entries(pkg[field] ?? {})) {
      if (String(range).startsWith('workspace:'))
        fail(`${tgz}: ${field}.${dep} is still "${range}" (pack with pnpm, which rewrites it)`);
      if (dep.startsWith('@flotilla/') && !names.has(dep))
        fail(`${tgz}: depends on ${dep}, which no tarball in dist-packages provides`);
    }
  if (!Array.isArray(pkg.files)) fail(`${tgz}: no "files" list`);
  for (const [bin, target] of Object.entries(pkg.bin ?? {}))
    if (!has(target)) fail(`${tgz}: bin ${bin} → ${target} is not in the tarball (build first: tsc -b)`);
  for (const [subpath, entry] of Object.entries(pkg.exports ?? {}))
    for (const target of Object.values(typeof entry === 'string' ? { default: entry } : entry))
      if (!has(target)) fail(`${tgz}: exports entry ${subpath} → ${target} is not in the tarball`);
  for (const path of files)
    if (/(^|\/)(test|\.tsbuildinfo)(\/|$)|\.test\.js$/.test(path)) fail(`${tgz}: ships ${path}`);
  return pkg;
}

const dirs = packageDirs();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
pnpm([
  '-r',
  ...dirs.flatMap(({ dir }) => ['--filter', `./${relative(root, dir)}`]),
  'pack',
  '--pack-destination',
  out,
]);
const tarballs = readdirSync(out)
  .filter((n) => n.endsWith('.tgz'))
  .sort();
if (tarballs.length !== dirs.length)
  fail(`expected ${dirs.length} tarballs in ${out}, found ${tarballs.length}`);
const names = new Set(dirs.map(({ manifest }) => manifest.name));
for (const name of tarballs) {
  const pkg = checkTarball(join(out, name), names);
  const bins = Object.keys(pkg.bin ?? {});
  console.log(
    `dist-packages/${name}  ${pkg.name}@${pkg.version}${bins.length ? `  bin: ${bins.join(', ')}` : ''}`,
  );
}
console.log(`install: npm install -g --prefix DIR dist-packages/*.tgz (all of them in one command)`);
