/**
 * The boot contract: the one place that says how a Flotilla device boots. The factory disk layout
 * (packages/image), the GRUB config and the U-Boot boot script (generated here) and the agent's
 * bootloader backends (packages/agent) all read these names, so they cannot drift apart.
 *
 * How a trial works, on every bootloader:
 *   upgrade_available=0  boot flotilla_slot; the environment is not written at boot.
 *   upgrade_available=1  a trial of flotilla_slot is armed. Each boot counts one attempt and saves
 *                        the environment before the kernel starts; once the attempts exceed
 *                        bootlimit the bootloader boots flotilla_good_slot and clears the trial.
 *                        The agent commits (flotilla_good_slot = flotilla_slot, upgrade_available=0).
 * A trial that hangs always comes back: `panic=` reboots a panicking kernel, a failed kernel load
 * resets (U-Boot) or falls to the good slot's entry (GRUB), and a watchdog armed by the initramfs
 * resets a boot that never reaches the agent.
 */

export type BootSlot = 'A' | 'B';
export const BOOT_SLOTS: readonly BootSlot[] = ['A', 'B'];

/** Architectures a factory disk can be built for, and the bootloader each one uses. */
export type BootArch = 'x86_64' | 'aarch64';
export const BOOT_ARCHES: readonly BootArch[] = ['x86_64', 'aarch64'];
export const BOOTLOADER_OF_ARCH = { x86_64: 'grub', aarch64: 'uboot' } as const satisfies Record<
  BootArch,
  'grub' | 'uboot'
>;

export function isBootArch(v: string): v is BootArch {
  return (BOOT_ARCHES as readonly string[]).includes(v);
}

/** Environment variables shared by every bootloader (U-Boot env, grubenv, the file bootloader). */
export const BOOT_VARS = {
  /** Slot the next boot starts; also passed to the kernel as `flotilla.slot=`. */
  slot: 'flotilla_slot',
  /** Slot the bootloader falls back to when a trial runs out of attempts. */
  good: 'flotilla_good_slot',
  /** 1 while a trial of flotilla_slot is armed and not committed. */
  upgrade: 'upgrade_available',
  /** Attempts the trial has used (U-Boot counts up with setexpr). */
  count: 'bootcount',
  /** Attempts a trial may use. */
  limit: 'bootlimit',
  /** Attempts left (GRUB counts down by string compares: it has no arithmetic). */
  left: 'boot_left',
  /** Anti-rollback floor recorded by the last commit. */
  floor: 'flotilla_secver',
} as const;

export const DEFAULT_BOOTLIMIT = 3;
/**
 * Largest bootlimit: GRUB counts down through one-digit string compares, and U-Boot's setexpr
 * prints hex, so the count (at most bootlimit + 1) must stay a single decimal digit.
 */
export const MAX_BOOTLIMIT = 8;

/** Kernel command-line parameter naming the booted slot (a hint for the agent, not its proof). */
export const SLOT_CMDLINE_PARAM = 'flotilla.slot';
/** Every slot carries its own kernel: an update updates the kernel too. Paths inside the rootfs. */
export const SLOT_KERNEL_PATH = '/boot/vmlinuz';
export const SLOT_INITRD_PATH = '/boot/initrd.img';
/** Seconds a panicking kernel waits before it reboots (a trial that panics counts and comes back). */
export const KERNEL_PANIC_SECONDS = 5;
export const SERIAL_CONSOLE: Record<BootArch, string> = {
  x86_64: 'ttyS0,115200',
  aarch64: 'ttyAMA0,115200',
};

/** GPT partition type GUIDs (UEFI spec; UAPI discoverable partitions registry). */
export const PARTITION_TYPES = {
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  linuxData: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
  ubootEnv: '3DE21764-95BD-54BD-A5C3-4ABE786F38A8',
  rootX86_64: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
  rootAarch64: 'B921B045-1DF0-41C3-AF44-4C6F280D3FAE',
} as const;

export type BootPartitionRole = 'esp' | 'uboot-env' | 'slot' | 'data';

export interface BootPartition {
  /** GPT partition name (PARTLABEL): the initramfs finds slots by it, the agent's config names it. */
  name: string;
  role: BootPartitionRole;
  typeGuid: string;
  /** Fixed size in bytes; slots and data are sized when the disk is built. */
  size?: number;
  slot?: BootSlot;
}

const MiB = 1024 * 1024;

export function slotPartitionName(slot: BootSlot): string {
  return `rootfs-${slot}`;
}

/** The GPT of a factory disk, in order (partition numbers start at 1), every entry 1 MiB aligned. */
export function bootLayout(arch: BootArch): BootPartition[] {
  const rootType = arch === 'x86_64' ? PARTITION_TYPES.rootX86_64 : PARTITION_TYPES.rootAarch64;
  const first: BootPartition =
    arch === 'x86_64'
      ? { name: 'esp', role: 'esp', typeGuid: PARTITION_TYPES.esp, size: ESP_SIZE }
      : { name: 'uboot-env', role: 'uboot-env', typeGuid: PARTITION_TYPES.ubootEnv, size: MiB };
  return [
    first,
    ...BOOT_SLOTS.map(
      (slot): BootPartition => ({ name: slotPartitionName(slot), role: 'slot', typeGuid: rootType, slot }),
    ),
    { name: 'data', role: 'data', typeGuid: PARTITION_TYPES.linuxData },
  ];
}

/** 1-based GPT partition number of a slot (GRUB's `gptN`, U-Boot's `dev:N`). */
export function slotPartitionNumber(arch: BootArch, slot: BootSlot): number {
  const index = bootLayout(arch).findIndex((p) => p.slot === slot);
  return index + 1;
}

/** The EFI system partition (x86_64): FAT, GRUB's EFI image, and grubenv next to it. */
export const ESP_SIZE = 32 * MiB;
export const ESP_FAT_LABEL = 'FLOTILLA';
export const GRUB_EFI_PATH = '/EFI/BOOT/BOOTX64.EFI';
/** grubenv lives on the ESP (GRUB's save_env rewrites its 1 KiB in place; the agent renames a copy). */
export const GRUB_ENV_PATH = '/EFI/BOOT/grubenv';
export const GRUB_ENV_SIZE = 1024;
/**
 * A second grubenv beside it holding only the committed slot (`flotilla_committed_slot`). GRUB
 * never writes it; the agent writes it at commit, before grubenv. When grubenv is torn (GRUB
 * loads every whole `name=value` line before a cut and nothing from a block without its header),
 * grub.cfg boots this slot instead of guessing A (docs/boot.md, "A torn grubenv").
 */
export const GRUB_COMMITTED_ENV_PATH = '/EFI/BOOT/grubenv-committed';
export const GRUB_COMMITTED_VAR = 'flotilla_committed_slot';
const GRUBENV_HEADER = '# GRUB Environment Block\n';

/**
 * grubenv's format (what grub-editenv and GRUB's save_env write): a header line, `name=value`
 * lines (backslash escapes), `#` padding to 1 KiB. Null when the bytes are not such a block.
 */
export function parseGrubEnv(bytes: Uint8Array): Record<string, string> | null {
  const text = new TextDecoder().decode(bytes);
  if (bytes.length !== GRUB_ENV_SIZE || !text.startsWith(GRUBENV_HEADER)) return null;
  const vars: Record<string, string> = {};
  for (const line of text.slice(GRUBENV_HEADER.length).split('\n')) {
    if (line.startsWith('#')) continue; // comments (Debian's grub-editenv adds one) and padding
    const eq = line.indexOf('=');
    if (eq > 0) vars[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return vars;
}

/** One 1 KiB grubenv block holding `vars`; null when they do not fit. */
export function serializeGrubEnv(vars: Record<string, string>): Uint8Array | null {
  const body = Object.entries(vars)
    .map(([k, v]) => `${k}=${v.replace(/\\/g, '\\\\')}\n`)
    .join('');
  const text = new TextEncoder().encode(GRUBENV_HEADER + body);
  if (text.length > GRUB_ENV_SIZE) return null;
  const out = new Uint8Array(GRUB_ENV_SIZE).fill(0x23); // '#'
  out.set(text, 0);
  return out;
}

/** Where a running device mounts the ESP (so the agent reaches grubenv). */
export const ESP_MOUNT_POINT = '/boot/efi';

/**
 * U-Boot environment (aarch64): raw, in the `uboot-env` partition, two copies (redundant env:
 * CONFIG_SYS_REDUNDAND_ENVIRONMENT) at these offsets from the partition start, each ENV_SIZE bytes.
 * U-Boot's build and fw_env.config must name the same offsets (docs/boot.md).
 */
export const UBOOT_ENV = {
  partition: 'uboot-env',
  size: 0x4000,
  offsets: [0, 0x4000],
  redundant: true,
} as const;

/** Byte offsets of the U-Boot env copies from the start of the disk (U-Boot's CONFIG_ENV_OFFSET[_REDUND]). */
export function ubootEnvDiskOffsets(): number[] {
  // the first partition starts at 1 MiB: bootLayout's alignment
  return UBOOT_ENV.offsets.map((o) => MiB + o);
}

/** The environment a factory disk starts with: `slot` committed, no trial. */
export function factoryBootVars(slot: BootSlot = 'A', bootlimit = DEFAULT_BOOTLIMIT): Record<string, string> {
  return {
    [BOOT_VARS.slot]: slot,
    [BOOT_VARS.good]: slot,
    [BOOT_VARS.upgrade]: '0',
    [BOOT_VARS.count]: '0',
    [BOOT_VARS.limit]: String(bootlimit),
    [BOOT_VARS.left]: String(bootlimit),
  };
}

/** The kernel command line a slot boots with (also what the emulated bootloaders record). */
export function kernelCmdline(arch: BootArch, slot: BootSlot): string {
  return [
    `console=${SERIAL_CONSOLE[arch]}`,
    `root=PARTLABEL=${slotPartitionName(slot)}`,
    'rootwait',
    'ro',
    `panic=${KERNEL_PANIC_SECONDS}`,
    `${SLOT_CMDLINE_PARAM}=${slot}`,
  ].join(' ');
}

export interface BootDecision {
  /** The slot this boot starts. */
  slot: BootSlot;
  /** Variables the bootloader saves before booting (empty: no environment write). */
  save: Record<string, string>;
  /** True when this boot is the fallback after a trial used up its attempts. */
  fellBack: boolean;
}

/** `${name}`: a variable reference in GRUB and U-Boot scripts. */
const ref = (name: string) => `\${${name}}`;

function slotOr(v: string | undefined, fallback: BootSlot): BootSlot {
  return v === 'A' || v === 'B' ? v : fallback;
}

/**
 * What the generated U-Boot script decides at power-on, as a function: emulators, the file
 * bootloader and the tests use it; the QEMU scenarios check that the real scripts agree.
 */
export function decideUbootBoot(vars: Record<string, string | undefined>): BootDecision {
  const slot = slotOr(vars[BOOT_VARS.slot], 'A');
  const good = slotOr(vars[BOOT_VARS.good], slot);
  if (vars[BOOT_VARS.upgrade] !== '1') return { slot, save: {}, fellBack: false };
  const count = (Number.parseInt(vars[BOOT_VARS.count] ?? '0', 16) || 0) + 1;
  const limit = Number.parseInt(vars[BOOT_VARS.limit] ?? '', 10);
  const bounded = Number.isFinite(limit) ? limit : DEFAULT_BOOTLIMIT;
  if (count > bounded)
    return {
      slot: good,
      save: { [BOOT_VARS.count]: count.toString(16), [BOOT_VARS.slot]: good, [BOOT_VARS.upgrade]: '0' },
      fellBack: true,
    };
  return { slot, save: { [BOOT_VARS.count]: count.toString(16) }, fellBack: false };
}

/**
 * True when grubenv holds the three variables every Flotilla write sets, each with a value it can
 * have: anything less is a block torn by a power cut (or never written), not a state to boot.
 */
export function isWholeGrubEnv(vars: Record<string, string | undefined>): boolean {
  const slotVar = (v: string | undefined) => v === 'A' || v === 'B';
  const upgrade = vars[BOOT_VARS.upgrade];
  return (
    slotVar(vars[BOOT_VARS.slot]) && slotVar(vars[BOOT_VARS.good]) && (upgrade === '0' || upgrade === '1')
  );
}

/**
 * What the generated grub.cfg decides at power-on (string countdown of boot_left). `vars` is what
 * GRUB's load_env took from grubenv; `committed` the slot in grubenv-committed (undefined when
 * that file is missing or unreadable). A torn grubenv boots the committed slot, A without one.
 */
export function decideGrubBoot(vars: Record<string, string | undefined>, committed?: string): BootDecision {
  if (!isWholeGrubEnv(vars)) return { slot: slotOr(committed, 'A'), save: {}, fellBack: false };
  const slot = slotOr(vars[BOOT_VARS.slot], 'A');
  const good = slotOr(vars[BOOT_VARS.good], slot);
  if (vars[BOOT_VARS.upgrade] !== '1') return { slot, save: {}, fellBack: false };
  const left = vars[BOOT_VARS.left] ?? '';
  if (/^[1-9]$/.test(left))
    return { slot, save: { [BOOT_VARS.left]: String(Number(left) - 1) }, fellBack: false };
  return {
    slot: good,
    save: { [BOOT_VARS.slot]: good, [BOOT_VARS.upgrade]: '0', [BOOT_VARS.left]: '0' },
    fellBack: true,
  };
}

export interface GrubCfgOptions {
  /** Seconds GRUB shows its menu (0: boot at once; never waits for ever). */
  timeoutSeconds?: number;
  /** Extra kernel parameters (e.g. `quiet`). */
  extraCmdline?: string;
}

/**
 * grub.cfg for the x86_64 factory disk. It is embedded in the standalone GRUB EFI image; grubenv
 * is read from next to that image on the ESP (`$cmdpath`). GRUB has no arithmetic, so the trial
 * counts boot_left down by string compares. Entry 0 boots flotilla_slot; when its kernel or
 * initrd cannot be loaded GRUB runs the `fallback` entry, the last good slot.
 */
export function renderGrubCfg(opts: GrubCfgOptions = {}): string {
  const v = BOOT_VARS;
  const arch: BootArch = 'x86_64';
  const timeout = opts.timeoutSeconds ?? 0;
  const envFile = `\${cmdpath}/${GRUB_ENV_PATH.split('/').pop()}`;
  const committedFile = `\${cmdpath}/${GRUB_COMMITTED_ENV_PATH.split('/').pop()}`;
  const c = GRUB_COMMITTED_VAR;
  const countdown = Array.from({ length: MAX_BOOTLIMIT + 1 }, (_, i) => MAX_BOOTLIMIT + 1 - i)
    .map((n, i) => `  ${i === 0 ? 'if  ' : 'elif'} [ "\${${v.left}}" = "${n}" ]; then set ${v.left}=${n - 1}`)
    .join('\n');
  const partOf = (slot: BootSlot) => slotPartitionNumber(arch, slot);
  const extra = opts.extraCmdline ? ` ${opts.extraCmdline}` : '';
  const entry = (title: string, slotVar: string) =>
    [
      `menuentry "${title}" {`,
      `  if [ "\${${slotVar}}" = "B" ]; then set part=${partOf('B')}; else set part=${partOf('A')}; fi`,
      `  set slotroot="(\${bootdisk},gpt\${part})"`,
      `  linux \${slotroot}${SLOT_KERNEL_PATH} console=${SERIAL_CONSOLE[arch]} root=PARTLABEL=rootfs-\${${slotVar}} rootwait ro panic=${KERNEL_PANIC_SECONDS} ${SLOT_CMDLINE_PARAM}=\${${slotVar}}${extra}`,
      `  initrd \${slotroot}${SLOT_INITRD_PATH}`,
      '}',
    ].join('\n');
  return `# Generated from the Flotilla boot contract (packages/protocol/src/boot-contract.ts). Do not edit.
set timeout=${timeout}
set timeout_style=hidden
set default=0
set fallback=1
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
insmod part_gpt
insmod fat
insmod ext2
insmod regexp
# the disk GRUB was started from: $cmdpath is (hdN,gptM)/EFI/BOOT
regexp --set=1:bootdisk '^\\(([^,]+),' "\${cmdpath}"
load_env --file "${committedFile}" ${c}
load_env --file "${envFile}" ${v.slot} ${v.good} ${v.upgrade} ${v.left}
# a torn grubenv (no header: nothing loaded; cut: the lines before the cut) boots the committed slot
set flotilla_env=whole
if [ "\${${v.slot}}" != "A" -a "\${${v.slot}}" != "B" ]; then set flotilla_env=torn; fi
if [ "\${${v.good}}" != "A" -a "\${${v.good}}" != "B" ]; then set flotilla_env=torn; fi
if [ "\${${v.upgrade}}" != "0" -a "\${${v.upgrade}}" != "1" ]; then set flotilla_env=torn; fi
if [ "\${flotilla_env}" = "torn" ]; then
  if [ "\${${c}}" != "B" ]; then set ${c}=A; fi
  echo "flotilla: grubenv is torn or unreadable, booting the committed slot \${${c}}"
  set ${v.slot}="\${${c}}"
  set ${v.good}="\${${c}}"
  set ${v.upgrade}=0
fi
if [ "\${${v.upgrade}}" = "1" ]; then
${countdown}
  else
    echo "flotilla: trial of slot \${${v.slot}} used its attempts, falling back to \${${v.good}}"
    set ${v.slot}="\${${v.good}}"
    set ${v.upgrade}=0
    set ${v.left}=0
  fi
  save_env --file "${envFile}" ${v.slot} ${v.upgrade} ${v.left}
fi
echo "flotilla: booting slot \${${v.slot}}"
${entry(`Flotilla slot ${ref(v.slot)}`, v.slot)}
${entry(`Flotilla good slot ${ref(v.good)}`, v.good)}
`;
}

export interface BootCmdOptions {
  /** U-Boot device type and number holding the slots (`virtio 0`, `mmc 0`). */
  devtype?: string;
  devnum?: string;
  extraCmdline?: string;
}

/**
 * The U-Boot boot script (hush; compile with `mkimage -A arm64 -T script -C none -d boot.cmd
 * boot.scr`). Works on a stock U-Boot (no CONFIG_BOOTCOUNT_LIMIT): counts the trial with
 * setexpr, saves the environment before the kernel starts, falls back past bootlimit, and resets
 * when a kernel cannot be loaded or booted, so a broken trial still counts and comes back.
 */
export function renderUbootBootCmd(opts: BootCmdOptions = {}): string {
  const v = BOOT_VARS;
  const arch: BootArch = 'aarch64';
  const dev = `\${flotilla_devtype} \${flotilla_devnum}:\${flotilla_part}`;
  const extra = opts.extraCmdline ? ` ${opts.extraCmdline}` : '';
  return `# Generated from the Flotilla boot contract (packages/protocol/src/boot-contract.ts). Do not edit.
setenv flotilla_devtype ${opts.devtype ?? 'virtio'}
setenv flotilla_devnum ${opts.devnum ?? '0'}
if test "\${${v.slot}}" != "B"; then setenv ${v.slot} A; fi
if test "\${${v.good}}" != "A" && test "\${${v.good}}" != "B"; then setenv ${v.good} \${${v.slot}}; fi
if test -z "\${${v.limit}}"; then setenv ${v.limit} ${DEFAULT_BOOTLIMIT}; fi
if test -z "\${${v.count}}"; then setenv ${v.count} 0; fi
if test "\${${v.upgrade}}" = "1"; then
  setexpr ${v.count} \${${v.count}} + 1
  if test \${${v.count}} -gt \${${v.limit}}; then
    echo "flotilla: trial of slot \${${v.slot}} used its attempts, falling back to \${${v.good}}"
    setenv ${v.slot} \${${v.good}}
    setenv ${v.upgrade} 0
  fi
  saveenv
fi
if test "\${${v.slot}}" = "B"; then setenv flotilla_part ${slotPartitionNumber(arch, 'B')}; else setenv flotilla_part ${slotPartitionNumber(arch, 'A')}; fi
echo "flotilla: booting slot \${${v.slot}}"
setenv bootargs "console=${SERIAL_CONSOLE[arch]} root=PARTLABEL=rootfs-\${${v.slot}} rootwait ro panic=${KERNEL_PANIC_SECONDS} ${SLOT_CMDLINE_PARAM}=\${${v.slot}}${extra}"
if load ${dev} \${kernel_addr_r} ${SLOT_KERNEL_PATH}; then
  if load ${dev} \${ramdisk_addr_r} ${SLOT_INITRD_PATH}; then
    booti \${kernel_addr_r} \${ramdisk_addr_r}:\${filesize} \${fdtcontroladdr}
  fi
fi
echo "flotilla: cannot boot slot \${${v.slot}}: resetting"
reset
`;
}
