import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import {
  buildGpt,
  buildUbootEnvPartition,
  type GptPartition,
  parseUbootEnvText,
  SECTOR,
  uuidFromName,
} from '@flotilla/image';
import {
  bootLayout,
  SLOT_INITRD_PATH,
  SLOT_KERNEL_PATH,
  UBOOT_ENV,
  ubootEnvDiskOffsets,
} from '@flotilla/protocol';

/**
 * The aarch64 test device: our U-Boot (firmware-images/uboot/build-uboot.mjs), Debian's arm64
 * kernel and busybox (pinned in firmware-images/boot/packages.aarch64.lock), a small initramfs
 * that loads the kernel's SD/ext4/watchdog modules, arms the watchdog and switches to the slot,
 * and a test rootfs whose init reports the environment as Linux sees it through fw_printenv.
 */
const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE = resolve(process.env.FLOTILLA_CACHE ?? join(homedir(), '.cache/flotilla'));
const MiB = 1024 * 1024;
/** QEMU's SD card model wants a power-of-two size. */
export const DISK_BYTES = 256 * MiB;
const SLOT_BYTES = 96 * MiB;
const DATA_BYTES = 16 * MiB;
/** Watchdog heartbeat the initramfs arms (i6300esb, nowayout): a hung trial resets after it. */
export const WATCHDOG_SECONDS = 20;
/** The device's fw_env.config: the env copies on the whole SD card, as U-Boot's Kconfig has them. */
export const DEVICE_FW_ENV_CONFIG = ubootEnvDiskOffsets()
  .map((o) => `/dev/mmcblk0 0x${o.toString(16)} 0x${UBOOT_ENV.size.toString(16)}\n`)
  .join('');

export interface UbootBuild {
  path: string;
  initialEnv: string;
  buildSeconds: number;
  cached: boolean;
}

/** Builds (or finds in the cache) U-Boot from Debian's source package: minutes the first time. */
export async function ensureUboot(): Promise<UbootBuild> {
  const { stdout } = await run(
    process.execPath,
    [join(repo, 'firmware-images/uboot/build-uboot.mjs'), '--json'],
    {
      maxBuffer: 16 * MiB,
    },
  );
  const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
  if (!result.path) throw new Error(`build-uboot.mjs: ${stdout}`);
  return result as UbootBuild;
}

interface LockEntry {
  name: string;
  version: string;
  sha256: string;
}

async function lockEntries(): Promise<Map<string, LockEntry>> {
  const text = await readFile(join(repo, 'firmware-images/boot/packages.aarch64.lock'), 'utf8');
  const out = new Map<string, LockEntry>();
  for (const line of text.split('\n')) {
    const [kind, name, version, sha256] = line.trim().split(/\s+/);
    if (kind === 'deb' && name && version && sha256) out.set(name, { name, version, sha256 });
  }
  return out;
}

/** `apt-get download NAME:arm64=VERSION` once into the cache, checked against the lock, unpacked once. */
async function debDir(entry: LockEntry): Promise<string> {
  const debs = join(CACHE, 'debs');
  await mkdir(debs, { recursive: true });
  const file = `${entry.name}_${entry.version.replace(/:/g, '%3a')}_arm64.deb`;
  if (!existsSync(join(debs, file)))
    await run('apt-get', ['download', `${entry.name}:arm64=${entry.version}`], { cwd: debs });
  const sha = createHash('sha256')
    .update(await readFile(join(debs, file)))
    .digest('hex');
  if (sha !== entry.sha256) throw new Error(`${file}: sha256 ${sha}, the lock says ${entry.sha256}`);
  const dest = join(CACHE, 'unpacked', sha.slice(0, 16));
  if (!existsSync(join(dest, '.done'))) {
    await rm(dest, { recursive: true, force: true });
    await mkdir(dest, { recursive: true });
    await run('dpkg', ['-x', join(debs, file), dest]);
    await writeFile(join(dest, '.done'), '');
  }
  return dest;
}

export interface Arm64Inputs {
  kernel: string;
  kver: string;
  modules: string;
  busybox: string;
  /** Unpacked packages by name. */
  dirs: Record<string, string>;
}

export async function fetchArm64Inputs(): Promise<Arm64Inputs> {
  const lock = await lockEntries();
  const dirs: Record<string, string> = {};
  const names = ['busybox-static', 'libc6', 'zlib1g', 'libubootenv0.1', 'libubootenv-tool'];
  const kernelName = [...lock.keys()].find((n) => n.startsWith('linux-image-'));
  if (!kernelName) throw new Error('no linux-image in packages.aarch64.lock');
  for (const name of [kernelName, ...names]) {
    const entry = lock.get(name);
    if (!entry) throw new Error(`${name} is not in packages.aarch64.lock`);
    dirs[name] = await debDir(entry);
  }
  const kver = kernelName.replace('linux-image-', '');
  return {
    kernel: join(dirs[kernelName]!, 'boot', `vmlinuz-${kver}`),
    kver,
    modules: join(dirs[kernelName]!, 'lib/modules', kver, 'kernel'),
    busybox: join(dirs['busybox-static']!, 'bin/busybox'),
    dirs,
  };
}

/** Debian's arm64 kernel has these as modules; loaded in dependency order (no modprobe). */
export const ARM64_MODULES = [
  'drivers/mmc/host/cqhci',
  'drivers/mmc/host/sdhci',
  'drivers/mmc/host/sdhci-pci',
  'lib/crc16',
  'fs/mbcache',
  'fs/jbd2/jbd2',
  'crypto/crc32c_generic',
  'fs/ext4/ext4',
  'drivers/watchdog/i6300esb',
];

type CpioEntry =
  | { path: string; type: 'dir' }
  | { path: string; type: 'file'; data: Buffer; mode?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; major: number; minor: number };

/** A newc cpio (what the kernel unpacks as an initramfs), gzipped; fixed owner and time. */
function makeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const push = (name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]) => {
    const nameBuf = Buffer.from(`${name}\0`);
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    parts.push(header, nameBuf, pad(header.length + nameBuf.length), data, pad(data.length));
  };
  for (const e of entries) {
    if (e.type === 'dir') push(e.path, 0o040755, Buffer.alloc(0));
    else if (e.type === 'file') push(e.path, 0o100000 | (e.mode ?? 0o644), e.data);
    else if (e.type === 'symlink') push(e.path, 0o120777, Buffer.from(e.target));
    else push(e.path, 0o020600, Buffer.alloc(0), [e.major, e.minor]);
  }
  push('TRAILER!!!', 0, Buffer.alloc(0));
  return gzipSync(Buffer.concat(parts));
}

const INITRAMFS_INIT = `#!/bin/busybox sh
# Load the SD, ext4 and watchdog drivers, arm the watchdog, find the slot by its GPT name, switch.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
  case "$m" in
    */i6300esb) insmod /lib/modules/$m.ko heartbeat=${WATCHDOG_SECONDS} nowayout=1 ;;
    *) insmod /lib/modules/$m.ko ;;
  esac
done
# opened and closed without the magic 'V' (nowayout): it resets the board unless fed
if [ -c /dev/watchdog ]; then echo -n 1 > /dev/watchdog; echo "flotilla-initramfs: watchdog armed (${WATCHDOG_SECONDS} s)"; fi
label=""
for word in $(cat /proc/cmdline); do case "$word" in root=PARTLABEL=*) label="\${word#root=PARTLABEL=}" ;; esac; done
dev=""
tries=0
while [ -z "$dev" ] && [ $tries -lt 100 ]; do
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$label" "$u"; then dev=$(sed -n 's/^DEVNAME=//p' "$u"); fi
  done
  [ -z "$dev" ] && sleep 0.1
  tries=$((tries + 1))
done
if [ -z "$dev" ] || ! mount -t ext4 -o ro "/dev/$dev" /newroot; then
  echo "flotilla-initramfs: cannot mount root PARTLABEL=$label"
  exit 1
fi
echo "flotilla-initramfs: root PARTLABEL=$label is /dev/$dev"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
`;

export async function makeInitramfs(inputs: Arm64Inputs): Promise<Buffer> {
  const entries: CpioEntry[] = [
    { path: 'bin', type: 'dir' },
    { path: 'dev', type: 'dir' },
    { path: 'dev/console', type: 'char', major: 5, minor: 1 },
    { path: 'etc', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: await readFile(inputs.busybox) },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(INITRAMFS_INIT) },
    { path: 'etc/modules', type: 'file', data: Buffer.from(`${ARM64_MODULES.join('\n')}\n`) },
  ];
  const dirs = new Set<string>();
  for (const m of ARM64_MODULES) {
    const parts = `lib/modules/${m}`.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) entries.push({ path: d, type: 'dir' });
      dirs.add(d);
    }
    entries.push({
      path: `lib/modules/${m}.ko`,
      type: 'file',
      data: await readFile(join(inputs.modules, `${m}.ko`)),
    });
  }
  return makeCpio(entries);
}

/**
 * What the test rootfs does once Linux runs it: 'report' feeds the watchdog, prints the slot and
 * the environment as fw_printenv reads it from mmcblk0, writes a mark with fw_setenv, powers off;
 * 'hang' never feeds the watchdog (a trial whose userspace hangs).
 */
export type RootfsBehaviour = 'report' | 'hang';

const ROOTFS_INIT: Record<RootfsBehaviour, string> = {
  report: `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
watchdog -t 5 -T ${WATCHDOG_SECONDS} /dev/watchdog
slot=$(sed -n 's/.*flotilla\\.slot=\\([AB]\\).*/\\1/p' /proc/cmdline)
echo "flotilla-test: userspace on slot $slot after $(cut -d' ' -f1 /proc/uptime) s"
echo "flotilla-test: env $(fw_printenv -c /etc/fw_env.config flotilla_slot flotilla_good_slot upgrade_available bootcount | tr '\\n' ' ')"
fw_setenv -c /etc/fw_env.config flotilla_linux_mark "booted-$slot" && echo "flotilla-test: fw_setenv done"
sync
poweroff -f
`,
  hang: `#!/bin/sh
echo "flotilla-test: userspace hangs without feeding the watchdog"
exec sleep 100000
`,
};

/** An ext4 slot image with the kernel and initramfs in /boot (or none: a slot without a kernel). */
export async function buildSlotImage(opts: {
  inputs: Arm64Inputs;
  initramfs: Buffer;
  behaviour: RootfsBehaviour | 'no-kernel';
  work: string;
  label: string;
}): Promise<string> {
  const tree = join(opts.work, `tree-${opts.label}`);
  await rm(tree, { recursive: true, force: true });
  for (const d of [
    'bin',
    'sbin',
    'dev',
    'proc',
    'sys',
    'tmp',
    'etc',
    'boot',
    'usr/bin',
    'lib/aarch64-linux-gnu',
  ])
    await mkdir(join(tree, d), { recursive: true });
  if (opts.behaviour !== 'no-kernel') {
    const { dirs } = opts.inputs;
    await copyFile(opts.inputs.kernel, join(tree, SLOT_KERNEL_PATH));
    await writeFile(join(tree, SLOT_INITRD_PATH), opts.initramfs);
    await copyFile(opts.inputs.busybox, join(tree, 'bin/busybox'));
    await chmod(join(tree, 'bin/busybox'), 0o755);
    for (const l of ['sh', 'cat', 'cut', 'echo', 'mount', 'sed', 'sleep', 'sync', 'tr'])
      await symlink('busybox', join(tree, 'bin', l));
    for (const l of ['poweroff', 'watchdog']) await symlink('../bin/busybox', join(tree, 'sbin', l));
    const lib = join(tree, 'lib/aarch64-linux-gnu');
    for (const f of ['libc.so.6', 'ld-linux-aarch64.so.1'])
      await copyFile(join(dirs.libc6!, 'lib/aarch64-linux-gnu', f), join(lib, f));
    await symlink('aarch64-linux-gnu/ld-linux-aarch64.so.1', join(tree, 'lib/ld-linux-aarch64.so.1'));
    await copyFile(join(dirs.zlib1g!, 'lib/aarch64-linux-gnu/libz.so.1.2.13'), join(lib, 'libz.so.1'));
    const envLib = join(dirs['libubootenv0.1']!, 'usr/lib/aarch64-linux-gnu');
    const so = (await readdir(envLib)).find((f) => /^libubootenv\.so\.\d+\.\d+\.\d+$/.test(f));
    if (!so) throw new Error('libubootenv.so not found');
    await copyFile(join(envLib, so), join(lib, 'libubootenv.so.0'));
    for (const tool of ['fw_printenv', 'fw_setenv']) {
      await copyFile(join(dirs['libubootenv-tool']!, 'usr/bin', tool), join(tree, 'usr/bin', tool));
      await chmod(join(tree, 'usr/bin', tool), 0o755);
    }
    await writeFile(join(tree, 'etc/fw_env.config'), DEVICE_FW_ENV_CONFIG);
    await writeFile(join(tree, 'sbin/init'), ROOTFS_INIT[opts.behaviour]);
    await chmod(join(tree, 'sbin/init'), 0o755);
  }
  const image = join(opts.work, `${opts.label}.ext4`);
  await rm(image, { force: true });
  await run(
    'mke2fs',
    ['-q', '-F', '-t', 'ext4', '-L', opts.label, '-d', tree, image, `${SLOT_BYTES / 1024}k`],
    {
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
    },
  );
  await rm(tree, { recursive: true, force: true });
  return image;
}

/**
 * A factory disk laid out by the boot contract (aarch64): GPT, uboot-env (both environment
 * copies from U-Boot's defaults + the slot variables, and boot.scr), slot images, empty data.
 */
export async function buildDisk(opts: {
  output: string;
  slotA: string;
  slotB: string;
  ubootInitialEnv: string;
}): Promise<void> {
  const layout = bootLayout('aarch64');
  let offset = MiB;
  const parts: (GptPartition & { offset: number; size: number })[] = layout.map((p) => {
    const size = p.size ?? (p.role === 'slot' ? SLOT_BYTES : DATA_BYTES);
    const part = {
      name: p.name,
      typeGuid: p.typeGuid,
      guid: uuidFromName(`uboot-test:${p.name}`).toUpperCase(),
      firstLba: offset / SECTOR,
      lastLba: (offset + size) / SECTOR - 1,
      offset,
      size,
    };
    offset += size;
    return part;
  });
  const gpt = buildGpt(DISK_BYTES, uuidFromName('uboot-test').toUpperCase(), parts);
  const envPart = await buildUbootEnvPartition({
    boardDefaults: parseUbootEnvText(await readFile(opts.ubootInitialEnv, 'utf8')),
    slot: 'A',
    size: parts[0]!.size,
  });
  const fh = await open(opts.output, 'w');
  try {
    await fh.truncate(DISK_BYTES);
    await fh.write(gpt.head, 0, gpt.head.length, 0);
    await fh.write(gpt.tail, 0, gpt.tail.length, gpt.tailOffset);
    await fh.write(envPart, 0, envPart.length, parts[0]!.offset);
    for (const [index, image] of [
      [1, opts.slotA],
      [2, opts.slotB],
    ] as const) {
      const bytes = await readFile(image);
      if (bytes.length > parts[index]!.size) throw new Error(`${image} larger than its slot`);
      await fh.write(bytes, 0, bytes.length, parts[index]!.offset);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fw_env.config for the host's fw_printenv / fw_setenv on the disk image file. */
export async function hostFwEnvConfig(disk: string, file: string): Promise<string> {
  await writeFile(
    file,
    ubootEnvDiskOffsets()
      .map((o) => `${disk} 0x${o.toString(16)} 0x${UBOOT_ENV.size.toString(16)}\n`)
      .join(''),
  );
  return file;
}
