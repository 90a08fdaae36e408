#!/usr/bin/env node
// Builds U-Boot for QEMU's arm64 `virt` machine from Debian's own source package, with the
// environment moved from pflash to raw offsets on the boot disk (docs/boot-uboot.md).
//
//   npx tsc -b && node firmware-images/uboot/build-uboot.mjs [--cache DIR] [--jobs N] [--json]
//
// Output: u-boot.bin (QEMU's -bios), u-boot-initial-env (the board's default environment, which
// the factory environment must carry), u-boot.config and build-info.json.
// Needs: a deb-src entry for Debian 12 in /etc/apt/sources.list.d, dpkg-dev,
// gcc-aarch64-linux-gnu, make, bison, flex, bc, libssl-dev, python3, device-tree-compiler.
// The result goes to DIR/uboot-<key>/ (DIR default: $XDG_CACHE_HOME/flotilla or ~/.cache/flotilla);
// <key> hashes the source package (its .dsc checksum), the config fragment, the patches, the
// recipe version and the cross compiler, so a build with the same inputs is skipped.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitWithError } from '../print-error.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const image = await import(join(here, '../../packages/image/dist/index.js'));
const FRAGMENT = join(here, 'flotilla-env-mmc.config');
const PATCHES = join(here, 'patches');
const DEFCONFIG = 'qemu_arm64_defconfig';
const CROSS = 'aarch64-linux-gnu-';
/** Part of the cache key: bump it when a change to the build steps below changes the output. */
const RECIPE_VERSION = 1;

class BuildError extends Error {
  constructor(code, message, hint) {
    super(message);
    this.code = code;
    this.hint = hint;
  }
}

/** Runs a tool; resolves with its stdout, rejects with a coded error carrying its output tail. */
function run(argv, { cwd, env, quiet = true } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd,
      env: { ...process.env, LC_ALL: 'C', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.length > 4_000_000) out = out.slice(-1_000_000);
      if (!quiet) process.stderr.write(d);
    });
    child.stderr.on('data', (d) => {
      err += d;
      if (err.length > 4_000_000) err = err.slice(-1_000_000);
    });
    child.on('error', (cause) =>
      reject(
        new BuildError(
          'FLOTILLA_ERR_IMAGE_TOOL_MISSING',
          `${argv[0]}: ${cause.message}`,
          'apt-get install -y dpkg-dev gcc-aarch64-linux-gnu make bison flex bc libssl-dev python3 device-tree-compiler',
        ),
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolvePromise(out);
      else
        reject(
          new BuildError(
            'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
            `${argv.join(' ')} exited with ${code}: ${(err || out).trim().split('\n').slice(-15).join('\n')}`,
            'see the tool output above',
          ),
        );
    });
  });
}

async function exists(path) {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** `apt-get source --print-uris` names the exact source package apt would fetch, with checksums. */
async function sourcePackage() {
  const text = await run(['apt-get', 'source', '--print-uris', 'u-boot']).catch((err) => {
    throw new BuildError(
      'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
      `apt-get cannot find the u-boot source package: ${err.message}`,
      'add a deb-src entry (copy /etc/apt/sources.list.d/debian.sources with `Types: deb-src`) and run apt-get update',
    );
  });
  const dsc = text.split('\n').find((l) => /^'[^']+\.dsc' /.test(l));
  if (!dsc)
    throw new BuildError(
      'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
      'apt-get source --print-uris u-boot lists no .dsc',
      'add a deb-src entry for Debian 12 and run apt-get update',
    );
  const [, file, , sha256] = dsc.match(/^'[^']+' (\S+) (\d+) SHA256:([0-9a-f]{64})/) ?? [];
  if (!file) throw new BuildError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', `unexpected apt-get line: ${dsc}`, '');
  return { dsc: file, dscSha256: sha256, version: file.replace(/^u-boot_/, '').replace(/\.dsc$/, '') };
}

/** The static fragment plus the lines generated from the boot contract. */
async function fragmentText() {
  return `${await readFile(FRAGMENT, 'utf8')}\n${image.ubootConfigFragment(image.QEMU_ARM64_BOARD)}`;
}

async function cacheKey(source) {
  const hash = createHash('sha256');
  hash.update(`dsc ${source.dscSha256}\n`);
  hash.update(await fragmentText());
  for (const name of (await readdir(PATCHES)).sort())
    hash.update(`${name}\n`).update(await readFile(join(PATCHES, name)));
  hash.update(`recipe ${RECIPE_VERSION}\n`);
  hash.update((await run([`${CROSS}gcc`, '--version'])).split('\n')[0]);
  return hash.digest('hex').slice(0, 16);
}

/** Kconfig drops a request it cannot satisfy without a word: check every line made it. */
async function checkConfig(dotConfig) {
  const have = new Set((await readFile(dotConfig, 'utf8')).split('\n'));
  const missing = (await fragmentText())
    .split('\n')
    .filter((l) => /^CONFIG_\w+=/.test(l) || /^# CONFIG_\w+ is not set$/.test(l))
    .filter((l) => !have.has(l));
  if (missing.length)
    throw new BuildError(
      'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
      `U-Boot's Kconfig did not take: ${missing.join(', ')}`,
      'a dependency of the option is missing in the fragment, or the source version changed',
    );
}

/** A finished build directory: renamed into place whole, build-info.json written last. */
async function finished(outDir) {
  return (await exists(join(outDir, 'u-boot.bin'))) && (await exists(join(outDir, 'build-info.json')));
}

/** Work directories of builds whose process is gone (killed, or the machine restarted). */
async function removeAbandonedWork(cacheDir, key) {
  const pattern = new RegExp(`^uboot-${key}\\.work-(\\d+)$`);
  for (const name of await readdir(cacheDir).catch(() => [])) {
    const pid = Number(pattern.exec(name)?.[1] ?? 0);
    if (pid > 0 && pid !== process.pid && !alive(pid))
      await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

async function build({ cacheDir, jobs, json }) {
  const log = (line) => json || process.stderr.write(`${line}\n`);
  const source = await sourcePackage();
  const key = await cacheKey(source);
  const outDir = join(cacheDir, `uboot-${key}`);
  const infoFile = join(outDir, 'build-info.json');
  if (await finished(outDir))
    return {
      ...JSON.parse(await readFile(infoFile, 'utf8')),
      path: join(outDir, 'u-boot.bin'),
      initialEnv: join(outDir, 'u-boot-initial-env'),
      cached: true,
    };

  const started = Date.now();
  // one work directory per build process: two builds of the same key at once (a CI run and a
  // test run sharing the cache) must not delete each other's tree; the first to finish wins
  await removeAbandonedWork(cacheDir, key);
  const work = join(cacheDir, `uboot-${key}.work-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  log(`u-boot: fetching Debian source ${source.version}`);
  // apt-get checks every file against the signed Sources index; dpkg-source against the .dsc.
  await run(['apt-get', 'source', '--download-only', `u-boot=${source.version}`], { cwd: work });
  await run(['dpkg-source', '--no-copy', '-x', source.dsc, 'src'], { cwd: work });
  const src = join(work, 'src');
  for (const name of (await readdir(PATCHES)).filter((n) => n.endsWith('.patch')).sort())
    await run(['patch', '-p1', '--forward', '-i', join(PATCHES, name)], { cwd: src });
  // The changelog date stamps the banner, so two builds of the same inputs are the same bytes.
  const epoch = (
    await run(['dpkg-parsechangelog', '-l', 'debian/changelog', '-STimestamp'], { cwd: src })
  ).trim();
  const env = { SOURCE_DATE_EPOCH: epoch, KBUILD_BUILD_USER: 'flotilla', KBUILD_BUILD_HOST: 'flotilla' };
  const make = ['make', 'O=build', `CROSS_COMPILE=${CROSS}`];
  await run([...make, DEFCONFIG], { cwd: src, env });
  await writeFile(join(work, 'flotilla.config'), await fragmentText());
  await run(
    ['scripts/kconfig/merge_config.sh', '-O', 'build', '-m', 'build/.config', join(work, 'flotilla.config')],
    {
      cwd: src,
      env,
    },
  );
  await run([...make, 'olddefconfig'], { cwd: src, env });
  await checkConfig(join(src, 'build/.config'));
  log(`u-boot: compiling (${jobs} jobs)`);
  await run([...make, `-j${jobs}`], { cwd: src, env, quiet: json });
  await run([...make, 'u-boot-initial-env'], { cwd: src, env });
  const seconds = Math.round((Date.now() - started) / 100) / 10;

  const staged = join(work, 'out');
  await mkdir(staged);
  await copyFile(join(src, 'build/u-boot.bin'), join(staged, 'u-boot.bin'));
  await copyFile(join(src, 'build/.config'), join(staged, 'u-boot.config'));
  await copyFile(join(src, 'build/u-boot-initial-env'), join(staged, 'u-boot-initial-env'));
  const binSha256 = createHash('sha256')
    .update(await readFile(join(staged, 'u-boot.bin')))
    .digest('hex');
  const info = {
    key,
    debianSource: source.version,
    dscSha256: source.dscSha256,
    defconfig: DEFCONFIG,
    fragment: 'firmware-images/uboot/flotilla-env-mmc.config + ubootConfigFragment(QEMU_ARM64_BOARD)',
    sha256: binSha256,
    buildSeconds: seconds,
    jobs,
  };
  await writeFile(join(staged, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
  if (!(await finished(outDir))) {
    await rm(outDir, { recursive: true, force: true });
    // appears whole or not at all; a build that finished meanwhile keeps its (equal) output
    await rename(staged, outDir).catch(async (err) => {
      if (!(await finished(outDir))) throw err;
    });
  }
  await rm(work, { recursive: true, force: true });
  return {
    ...info,
    path: join(outDir, 'u-boot.bin'),
    initialEnv: join(outDir, 'u-boot-initial-env'),
    cached: false,
  };
}

const json = process.argv.includes('--json');
let values;
try {
  ({ values } = parseArgs({
    options: {
      cache: { type: 'string' },
      jobs: { type: 'string', default: '2' },
      json: { type: 'boolean', default: false },
    },
  }));
} catch (err) {
  exitWithError(err, { json });
}
const cacheDir = resolve(
  values.cache ?? join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'flotilla'),
);
const jobs = Number.parseInt(values.jobs, 10);
try {
  if (!(jobs >= 1 && jobs <= 64))
    throw Object.assign(
      new BuildError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `--jobs ${values.jobs}`, 'pass 1 to 64'),
      {
        usage: true,
      },
    );
  await mkdir(cacheDir, { recursive: true });
  const result = await build({ cacheDir, jobs, json: values.json });
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else
    process.stdout.write(
      `${result.path}  (Debian u-boot ${result.debianSource}, ${result.cached ? 'cached' : `built in ${result.buildSeconds} s`})\n`,
    );
} catch (err) {
  exitWithError(err, { json });
}
