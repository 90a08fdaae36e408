import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseUbootEnvText } from '@flotilla/image';
import { decideUbootBoot, UBOOT_ENV, ubootEnvDiskOffsets } from '@flotilla/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDisk,
  buildSlotImage,
  ensureUboot,
  fetchArm64Inputs,
  hostFwEnvConfig,
  makeInitramfs,
  type UbootBuild,
  WATCHDOG_SECONDS,
} from './arm64-fixture.js';
import { Aarch64Vm } from './qemu-aarch64.js';

/**
 * U-Boot built from Debian's source with its environment on the disk, the contract's boot.scr,
 * Debian's arm64 kernel: booted for real in QEMU (TCG). Minutes of CPU (U-Boot's first build
 * alone takes ~4 min on 2 cores), so it runs with FLOTILLA_LONG=1 (docs/boot-uboot.md).
 */
const run = promisify(execFile);
const enabled = process.env.FLOTILLA_LONG === '1';
if (!enabled) process.stderr.write('skipping the U-Boot QEMU tests: set FLOTILLA_LONG=1 to run them\n');

const OUT = resolve('test-output/uboot-arm64');
const UBOOT_PROMPT_MS = 60_000;
const LINUX_BOOT_MS = 240_000;

describe.runIf(enabled)('U-Boot on QEMU arm64, environment on the disk', () => {
  let uboot: UbootBuild;
  let baseNoKernel: string;
  let baseHang: string;
  const vms: Aarch64Vm[] = [];
  const timings: string[] = [];

  beforeAll(async () => {
    await mkdir(OUT, { recursive: true });
    uboot = await ensureUboot();
    timings.push(`U-Boot ${uboot.cached ? 'cached' : `built in ${uboot.buildSeconds} s`}`);
    const inputs = await fetchArm64Inputs();
    const initramfs = await makeInitramfs(inputs);
    const work = join(OUT, 'work');
    await mkdir(work, { recursive: true });
    const slotA = await buildSlotImage({
      inputs,
      initramfs,
      behaviour: 'report',
      work,
      label: 'slot-report',
    });
    const slotEmpty = await buildSlotImage({
      inputs,
      initramfs,
      behaviour: 'no-kernel',
      work,
      label: 'slot-empty',
    });
    const slotHang = await buildSlotImage({ inputs, initramfs, behaviour: 'hang', work, label: 'slot-hang' });
    baseNoKernel = join(work, 'disk-b-no-kernel.img');
    baseHang = join(work, 'disk-b-hangs.img');
    await buildDisk({ output: baseNoKernel, slotA, slotB: slotEmpty, ubootInitialEnv: uboot.initialEnv });
    await buildDisk({ output: baseHang, slotA, slotB: slotHang, ubootInitialEnv: uboot.initialEnv });
  }, 1_200_000);

  afterEach(async () => {
    // Always end QEMU, even when a test failed half-way.
    await Promise.all(vms.splice(0).map((vm) => vm.kill()));
  });
  afterAll(() => {
    if (timings.length) process.stderr.write(`uboot-arm64 timings (TCG):\n  ${timings.join('\n  ')}\n`);
  });

  async function freshDisk(base: string, name: string): Promise<{ disk: string; fwConfig: string }> {
    const disk = join(OUT, `${name}.img`);
    await rm(disk, { force: true });
    await run('cp', ['--sparse=always', base, disk]);
    return { disk, fwConfig: await hostFwEnvConfig(disk, join(OUT, `${name}.fw_env.config`)) };
  }

  function startVm(disk: string, name: string, exitOnReset = false): Aarch64Vm {
    const vm = new Aarch64Vm({
      ubootBin: uboot.path,
      disk,
      serialLog: join(OUT, `${name}.serial.log`),
      exitOnReset,
    }).start();
    vms.push(vm);
    return vm;
  }

  async function ubootPrompt(vm: Aarch64Vm): Promise<number> {
    const at = await vm.waitFor(/Hit any key to stop autoboot/, { timeoutMs: UBOOT_PROMPT_MS });
    vm.send(' ');
    return vm.waitFor(/=> /, { from: at, timeoutMs: UBOOT_PROMPT_MS });
  }

  async function ubootCommand(
    vm: Aarch64Vm,
    from: number,
    command: string,
  ): Promise<{ end: number; output: string }> {
    vm.send(`${command}\n`);
    const end = await vm.waitFor(/\n=> /, { from, timeoutMs: UBOOT_PROMPT_MS });
    return { end, output: vm.serial.slice(from, end) };
  }

  const printenv = async (config: string) =>
    parseUbootEnvText((await run('fw_printenv', ['-c', config])).stdout);

  it("reads the disk's environment at power-on, and what saveenv writes is what fw_printenv reads", async () => {
    const { disk, fwConfig } = await freshDisk(baseNoKernel, 'saveenv');
    const vm = startVm(disk, 'saveenv', true);
    let at = await ubootPrompt(vm);
    expect(vm.serial).toMatch(/Loading Environment from MMC\.\.\. OK/);
    expect(vm.serial).not.toMatch(/using default environment/);
    let r = await ubootCommand(vm, at, 'printenv flotilla_slot upgrade_available');
    expect(r.output).toContain('flotilla_slot=A');
    r = await ubootCommand(vm, r.end, 'setenv flotilla_probe 42; saveenv');
    expect(r.output).toMatch(/Writing to (redundant )?MMC\(0\)\.\.\. OK/);
    at = r.end;
    vm.send('poweroff\n');
    await vm.waitExit(UBOOT_PROMPT_MS);
    const vars = await printenv(fwConfig);
    expect(vars.flotilla_probe).toBe('42');
    expect(vars.flotilla_slot).toBe('A');
  }, 180_000);

  it('falls back to the older environment copy when the newer one is torn (redundant env)', async () => {
    const { disk, fwConfig } = await freshDisk(baseNoKernel, 'torn-env');
    await run('fw_setenv', ['-c', fwConfig, 'flotilla_probe', 'old']);
    await run('fw_setenv', ['-c', fwConfig, 'flotilla_probe', 'new']);
    // The newer copy carries the higher flags byte (offset 4); tear its data as a power cut would.
    const bytes = await readFile(disk);
    const [first, second] = ubootEnvDiskOffsets() as [number, number];
    const newer = (bytes[first + 4]! - bytes[second + 4]! + 256) % 256 < 128 ? first : second;
    const torn = Buffer.alloc(UBOOT_ENV.size / 2, 0xa5);
    const fh = await open(disk, 'r+');
    await fh.write(torn, 0, torn.length, newer + 8);
    await fh.close();
    expect((await printenv(fwConfig)).flotilla_probe).toBe('old');
    const vm = startVm(disk, 'torn-env', true);
    const at = await ubootPrompt(vm);
    expect(vm.serial).not.toMatch(/using default environment/);
    const r = await ubootCommand(vm, at, 'printenv flotilla_probe');
    expect(r.output).toContain('flotilla_probe=old');
    vm.send('poweroff\n');
    await vm.waitExit(UBOOT_PROMPT_MS);
  }, 180_000);

  it('counts a trial of a slot without a kernel across resets, falls back to the good slot, and Linux boots it', async () => {
    const { disk, fwConfig } = await freshDisk(baseNoKernel, 'fallback');
    const armed = {
      flotilla_slot: 'B',
      flotilla_good_slot: 'A',
      upgrade_available: '1',
      bootcount: '0',
      bootlimit: '3',
    };
    const script = join(OUT, 'fallback.vars');
    await writeFile(
      script,
      Object.entries(armed)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    );
    await run('fw_setenv', ['-c', fwConfig, '-s', script]);

    // What the contract says the script does, boot by boot, until it boots a slot that has a kernel.
    const expected: string[] = [];
    let vars: Record<string, string> = { ...armed };
    for (let boot = 0; boot < 10; boot++) {
      const d = decideUbootBoot(vars);
      vars = { ...vars, ...d.save };
      expected.push(d.slot);
      if (d.slot === 'A') break;
    }
    expect(expected).toEqual(['B', 'B', 'B', 'A']);

    const vm = startVm(disk, 'fallback');
    const started = Date.now();
    let at = 0;
    for (const slot of expected) {
      at = await vm.waitFor(/U-Boot 20\d\d/, { from: at, timeoutMs: UBOOT_PROMPT_MS });
      at = await vm.waitFor(/flotilla: booting slot ([AB])/, { from: at, timeoutMs: UBOOT_PROMPT_MS });
      expect(vm.serial.slice(0, at)).toMatch(new RegExp(`booting slot ${slot}$`));
      if (slot === 'B')
        at = await vm.waitFor(/cannot boot slot B: resetting/, { from: at, timeoutMs: UBOOT_PROMPT_MS });
    }
    expect(vm.serial).toMatch(/trial of slot B used its attempts, falling back to A/);
    const kernelAt = await vm.waitFor(/Booting Linux on physical CPU/, {
      from: at,
      timeoutMs: LINUX_BOOT_MS,
    });
    const kernelSeconds = (Date.now() - started) / 1000;
    at = await vm.waitFor(/flotilla-initramfs: watchdog armed/, { from: kernelAt, timeoutMs: LINUX_BOOT_MS });
    at = await vm.waitFor(/flotilla-test: userspace on slot A/, { from: at, timeoutMs: LINUX_BOOT_MS });
    const userSeconds = (Date.now() - started) / 1000;
    // Linux reads the environment U-Boot saved, through mmcblk0 at the same offsets.
    at = await vm.waitFor(/flotilla-test: env [^\r\n]*\r?\n/, { from: at, timeoutMs: LINUX_BOOT_MS });
    const seen = vm.serial.slice(0, at).split('flotilla-test: env ').pop() ?? '';
    expect(seen).toContain('flotilla_slot=A');
    expect(seen).toContain('upgrade_available=0');
    expect(seen).toContain(`bootcount=${vars.bootcount}`);
    await vm.waitFor(/flotilla-test: fw_setenv done/, { from: at, timeoutMs: LINUX_BOOT_MS });
    await vm.waitExit(LINUX_BOOT_MS);
    timings.push(
      `fallback: 4 power-ons (3 failed trials + good slot) → kernel at ${kernelSeconds.toFixed(1)} s, userspace at ${userSeconds.toFixed(1)} s`,
    );

    const after = await printenv(fwConfig);
    expect(after.flotilla_linux_mark).toBe('booted-A'); // Linux's fw_setenv reached the disk
    expect(after.flotilla_slot).toBe('A');
    expect(after.upgrade_available).toBe('0');
    expect(after.bootcount).toBe(vars.bootcount);
  }, 600_000);

  it('resets a trial whose userspace hangs with the watchdog, counts it, and falls back', async () => {
    const { disk, fwConfig } = await freshDisk(baseHang, 'watchdog');
    const script = join(OUT, 'watchdog.vars');
    await writeFile(
      script,
      'flotilla_slot=B\nflotilla_good_slot=A\nupgrade_available=1\nbootcount=0\nbootlimit=1\n',
    );
    await run('fw_setenv', ['-c', fwConfig, '-s', script]);
    const vm = startVm(disk, 'watchdog');
    const started = Date.now();
    let at = await vm.waitFor(/flotilla: booting slot B/, { timeoutMs: UBOOT_PROMPT_MS });
    at = await vm.waitFor(/flotilla-initramfs: watchdog armed/, { from: at, timeoutMs: LINUX_BOOT_MS });
    at = await vm.waitFor(/flotilla-test: userspace hangs/, { from: at, timeoutMs: LINUX_BOOT_MS });
    const hungAt = Date.now();
    // Nothing feeds the watchdog now: the board resets and U-Boot counts the second attempt.
    at = await vm.waitFor(/U-Boot 20\d\d/, { from: at, timeoutMs: LINUX_BOOT_MS });
    const resetSeconds = (Date.now() - hungAt) / 1000;
    at = await vm.waitFor(/trial of slot B used its attempts, falling back to A/, {
      from: at,
      timeoutMs: UBOOT_PROMPT_MS,
    });
    at = await vm.waitFor(/flotilla-test: userspace on slot A/, { from: at, timeoutMs: LINUX_BOOT_MS });
    await vm.waitExit(LINUX_BOOT_MS);
    timings.push(
      `watchdog: hang → reset after ${resetSeconds.toFixed(1)} s (heartbeat ${WATCHDOG_SECONDS} s); fallback boot done at ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    const after = await printenv(fwConfig);
    expect(after.flotilla_slot).toBe('A');
    expect(after.upgrade_available).toBe('0');
    expect(after.bootcount).toBe('2');
  }, 600_000);
});
