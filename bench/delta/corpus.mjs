// Builds the delta benchmark corpus: real old/new pairs of software nobody here wrote, pinned by
// exact version, cached under bench/out/delta/ (gitignored).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { buildImage } from '@flotilla/image';

export const OUT = new URL('../out/delta/', import.meta.url).pathname;
const CACHE = join(OUT, 'cache');
const PAIRS = join(OUT, 'pairs');

/** Fixed time and UUID for reproducible images (docs/images.md#1-partition-images). */
const T = 1_700_000_000;
const UUID = '6b1a3c9e-0f3d-4e7a-9a51-2c1de0f1a7b0';

const NPM = {
  esbuild: ['@esbuild/linux-x64', '0.25.11', '0.25.12'],
  typescript: ['typescript', '5.9.2', '5.9.3'],
  prettier: ['prettier', '3.6.1', '3.6.2'],
  lodash: ['lodash', '4.17.21', '4.17.21'],
};
const DEB = {
  libssl3: ['libssl3', '3.0.20-1~deb12u2', '3.0.22-1~deb12u2'],
  libc6: ['libc6', '2.36-9+deb12u7', '2.36-9+deb12u14'],
};

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const log = (...a) => console.error('[corpus]', ...a);

function npmPackage(name, version) {
  const dir = join(CACHE, 'npm', `${name.replace('/', '+')}@${version}`);
  if (existsSync(join(dir, 'package'))) return join(dir, 'package');
  mkdirSync(dir, { recursive: true });
  log(`npm pack ${name}@${version}`);
  const file = run('npm', ['pack', '--silent', `${name}@${version}`], { cwd: dir })
    .toString()
    .trim()
    .split('\n')
    .at(-1);
  run('tar', ['xzf', file], { cwd: dir });
  return join(dir, 'package');
}

function debPackage(name, version) {
  const dir = join(CACHE, 'deb', `${name}_${version}`);
  if (existsSync(join(dir, 'root'))) return join(dir, 'root');
  mkdirSync(dir, { recursive: true });
  log(`apt-get download ${name}=${version}`);
  run('apt-get', ['download', `${name}=${version}`], { cwd: dir });
  const deb = readdirSync(dir).find((f) => f.endsWith('.deb'));
  run('dpkg-deb', ['-x', deb, 'root.tmp'], { cwd: dir });
  renameSync(join(dir, 'root.tmp'), join(dir, 'root'));
  return join(dir, 'root');
}

/** The package tree of a small device: node packages plus Debian's libc and OpenSSL. */
function rootfs(which) {
  const dir = join(CACHE, `rootfs-${which}`);
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const idx = which === 'old' ? 1 : 2;
  for (const [name, ...versions] of Object.values(NPM)) {
    cpSync(npmPackage(name, versions[idx - 1]), join(tmp, 'usr/lib/node_modules', name), { recursive: true });
  }
  // Debian packages stay the same: the scenario is "a few npm packages bumped one patch".
  for (const [name, version] of Object.values(DEB))
    cpSync(debPackage(name, version), tmp, { recursive: true });
  // glibc's charset converters (8 MiB) would not leave room in a 64 MiB image.
  rmSync(join(tmp, 'usr/lib/x86_64-linux-gnu/gconv'), { recursive: true, force: true });
  mkdirSync(join(tmp, 'etc'), { recursive: true });
  writeFileSync(join(tmp, 'etc/os-release'), `NAME=flotilla-bench\nVERSION_ID=${which}\n`);
  renameSync(tmp, dir);
  return dir;
}

const IMAGE_BUILDERS = {
  // Flotilla's own ext4 slot image (the one mke2fs + debugfs pinning, packages/image/src/fs-ext4.ts):
  // the deltas measured are those of the images a device receives.
  ext4: (dir, img, size) =>
    buildImage({
      input: dir,
      output: img,
      format: 'ext4',
      partitionSize: size,
      epoch: T,
      uuid: UUID,
      label: 'rootfs',
    }),
  erofs: (dir, img) => run('mkfs.erofs', ['-T', String(T), '-U', UUID, '--all-root', img, dir]),
  'erofs-lz4hc': (dir, img) =>
    run('mkfs.erofs', ['-zlz4hc', '-T', String(T), '-U', UUID, '--all-root', img, dir]),
  'squashfs-none': (dir, img) =>
    run('mksquashfs', [
      dir,
      img,
      '-reproducible',
      '-noappend',
      '-all-root',
      '-mkfs-time',
      String(T),
      '-all-time',
      String(T),
      '-noI',
      '-noD',
      '-noF',
      '-noX',
      '-quiet',
    ]),
  'squashfs-gzip': (dir, img) =>
    run('mksquashfs', [
      dir,
      img,
      '-reproducible',
      '-noappend',
      '-all-root',
      '-mkfs-time',
      String(T),
      '-all-time',
      String(T),
      '-quiet',
    ]),
  'squashfs-zstd': (dir, img) =>
    run('mksquashfs', [
      dir,
      img,
      '-reproducible',
      '-noappend',
      '-all-root',
      '-mkfs-time',
      String(T),
      '-all-time',
      String(T),
      '-comp',
      'zstd',
      '-quiet',
    ]),
};

async function image(kind, which, size) {
  const dir = join(PAIRS, `${kind}${size ? `-${size >> 20}M` : ''}`);
  const img = join(dir, `${which}.img`);
  if (existsSync(img)) return img;
  mkdirSync(dir, { recursive: true });
  log(`building ${kind} image (${which})`);
  await IMAGE_BUILDERS[kind](rootfs(which), `${img}.tmp`, size);
  renameSync(`${img}.tmp`, img);
  return img;
}

function filePair(id, getOld, getNew, rel) {
  const dir = join(PAIRS, id);
  const oldP = join(dir, 'old.bin');
  const newP = join(dir, 'new.bin');
  if (!existsSync(newP)) {
    mkdirSync(dir, { recursive: true });
    cpSync(join(getOld(), rel), oldP);
    cpSync(join(getNew(), rel), newP);
  }
  return { old: oldP, new: newP };
}

export const sha256File = (p) =>
  createHash('sha256')
    .update(run('cat', [p], { maxBuffer: 4 << 30 }))
    .digest('hex');

/** Every pair of the corpus, with the kind the targets talk about (executable, filesystem). */
export async function buildCorpus({ big = false } = {}) {
  const pairs = [];
  const [, eOld, eNew] = NPM.esbuild;
  pairs.push({
    id: 'esbuild-bin',
    kind: 'executable',
    title: `esbuild linux-x64 ${eOld} → ${eNew} (bin/esbuild)`,
    ...filePair(
      'esbuild-bin',
      () => npmPackage(NPM.esbuild[0], eOld),
      () => npmPackage(NPM.esbuild[0], eNew),
      'bin/esbuild',
    ),
  });
  const [, sOld, sNew] = DEB.libssl3;
  pairs.push({
    id: 'libcrypto',
    kind: 'executable',
    title: `Debian libssl3 ${sOld} → ${sNew} (libcrypto.so.3)`,
    ...filePair(
      'libcrypto',
      () => debPackage('libssl3', sOld),
      () => debPackage('libssl3', sNew),
      'usr/lib/x86_64-linux-gnu/libcrypto.so.3',
    ),
  });
  const [, cOld, cNew] = DEB.libc6;
  pairs.push({
    id: 'libc',
    kind: 'executable',
    title: `Debian libc6 ${cOld} → ${cNew} (libc.so.6)`,
    ...filePair(
      'libc',
      () => debPackage('libc6', cOld),
      () => debPackage('libc6', cNew),
      'lib/x86_64-linux-gnu/libc.so.6',
    ),
  });
  const [, tOld, tNew] = NPM.typescript;
  pairs.push({
    id: 'typescript-js',
    kind: 'text',
    title: `typescript ${tOld} → ${tNew} (lib/typescript.js)`,
    ...filePair(
      'typescript-js',
      () => npmPackage('typescript', tOld),
      () => npmPackage('typescript', tNew),
      'lib/typescript.js',
    ),
  });
  for (const kind of Object.keys(IMAGE_BUILDERS)) {
    const size = kind === 'ext4' ? 64 << 20 : undefined;
    pairs.push({
      id: `fs-${kind}`,
      kind: 'filesystem',
      format: kind,
      title: `${kind}${size ? ' 64 MiB' : ''} image, npm packages bumped one patch`,
      old: await image(kind, 'old', size),
      new: await image(kind, 'new', size),
    });
  }
  if (big) {
    pairs.push({
      id: 'fs-ext4-1G',
      kind: 'filesystem',
      format: 'ext4',
      big: true,
      title: 'ext4 1 GiB image, npm packages bumped one patch',
      old: await image('ext4', 'old', 1 << 30),
      new: await image('ext4', 'new', 1 << 30),
    });
  }
  for (const p of pairs) p.size = statSync(p.new).size;
  return pairs;
}
