import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BOOT_VARS,
  bootLayout,
  decideGrubBoot,
  decideUbootBoot,
  factoryBootVars,
  KERNEL_PANIC_SECONDS,
  MAX_BOOTLIMIT,
  PARTITION_TYPES,
  renderGrubCfg,
  renderUbootBootCmd,
  SLOT_INITRD_PATH,
  SLOT_KERNEL_PATH,
  slotPartitionNumber,
} from '../src/index.js';

const work = mkdtempSync(join(tmpdir(), 'flotilla-boot-contract-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface UbootRun {
  env: Record<string, string>;
  saved: Record<string, string> | null;
  loads: string[];
  booted: string | null;
  reset: boolean;
  bootargs: string;
}

/**
 * Runs the generated boot.cmd through the subset of U-Boot's hush it uses (setenv, setexpr with
 * U-Boot's hex arithmetic, test, if/then/else/fi, saveenv, load, booti, echo, reset), so the
 * script's decision is checked against the contract's, not against a copy of itself.
 */
function runBootCmd(script: string, env0: Record<string, string>, files: Set<string>): UbootRun {
  // the board's own load addresses, as U-Boot's default environment sets them
  const env: Record<string, string> = {
    kernel_addr_r: '0x40400000',
    ramdisk_addr_r: '0x44000000',
    fdtcontroladdr: '0x7ed00000',
    ...env0,
  };
  const run: UbootRun = { env, saved: null, loads: [], booted: null, reset: false, bootargs: '' };
  const expand = (s: string) => s.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, n: string) => env[n] ?? '');
  const words = (s: string) =>
    (expand(s).match(/"[^"]*"|\S+/g) ?? []).map((w) => (w.startsWith('"') ? w.slice(1, -1) : w));
  const test = (cond: string): boolean =>
    cond.split('&&').every((part) => {
      const w = words(part.trim().replace(/^test\s+/, ''));
      if (w[0] === '-z') return (w[1] ?? '') === '';
      if (w[1] === '=') return w[0] === w[2];
      if (w[1] === '!=') return w[0] !== w[2];
      if (w[1] === '-gt') return Number.parseInt(w[0]!, 10) > Number.parseInt(w[2]!, 10);
      throw new Error(`test: ${cond}`);
    });
  const command = (line: string): boolean => {
    const w = words(line);
    const [verb] = w;
    if (verb === 'setenv') env[w[1]!] = w.slice(2).join(' ');
    else if (verb === 'setexpr') {
      if (w[3] !== '+') throw new Error(`setexpr: ${line}`);
      env[w[1]!] = (Number.parseInt(w[2]!, 16) + Number.parseInt(w[4]!, 16)).toString(16);
    } else if (verb === 'saveenv') run.saved = { ...env };
    else if (verb === 'echo') return true;
    else if (verb === 'load') {
      const part = w[2]!.split(':')[1];
      run.loads.push(`${part} ${w[4]}`);
      return files.has(`${part}:${w[4]}`);
    } else if (verb === 'booti') {
      run.booted = env.flotilla_slot ?? null;
      run.bootargs = env.bootargs ?? '';
    } else if (verb === 'reset') run.reset = true;
    else throw new Error(`unknown command ${line}`);
    return true;
  };
  // a stack of "is this branch running" flags; a line is executed when every level runs
  const stack: { running: boolean; taken: boolean }[] = [];
  const live = () => stack.every((s) => s.running);
  for (const raw of script.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || run.booted || run.reset) continue;
    const oneLine = /^if (.+); then (.+); else (.+); fi$/.exec(line) ?? /^if (.+); then (.+); fi$/.exec(line);
    if (oneLine) {
      if (!live()) continue;
      if (test(oneLine[1]!)) command(oneLine[2]!);
      else if (oneLine[3]) command(oneLine[3]);
      continue;
    }
    const open = /^if (.+); then$/.exec(line);
    if (open) {
      const running = live() && (open[1]!.startsWith('load ') ? command(open[1]!) : test(open[1]!));
      stack.push({ running, taken: running });
    } else if (line === 'fi') stack.pop();
    else if (live()) command(line);
  }
  return run;
}

const partA = slotPartitionNumber('aarch64', 'A');
const partB = slotPartitionNumber('aarch64', 'B');
const kernelOf = (part: number) => [`${part}:${SLOT_KERNEL_PATH}`, `${part}:${SLOT_INITRD_PATH}`];
const both = new Set([...kernelOf(partA), ...kernelOf(partB)]);

describe('boot contract', () => {
  it('lays out the x86_64 disk as ESP, slot A, slot B, data and aarch64 with the U-Boot env first', () => {
    expect(bootLayout('x86_64').map((p) => [p.name, p.typeGuid])).toEqual([
      ['esp', PARTITION_TYPES.esp],
      ['rootfs-A', PARTITION_TYPES.rootX86_64],
      ['rootfs-B', PARTITION_TYPES.rootX86_64],
      ['data', PARTITION_TYPES.linuxData],
    ]);
    expect(bootLayout('aarch64').map((p) => p.name)).toEqual(['uboot-env', 'rootfs-A', 'rootfs-B', 'data']);
    expect(slotPartitionNumber('x86_64', 'B')).toBe(3);
  });

  it('the factory environment boots slot A with no trial and writes nothing at boot', () => {
    const env = factoryBootVars('A');
    expect(decideUbootBoot(env)).toEqual({ slot: 'A', save: {}, fellBack: false });
    expect(decideGrubBoot(env)).toEqual({ slot: 'A', save: {}, fellBack: false });
  });

  it('a trial of B is booted bootlimit times, then both bootloaders fall back to the good slot', () => {
    for (const decide of [decideUbootBoot, decideGrubBoot]) {
      let env: Record<string, string> = {
        ...factoryBootVars('A'),
        [BOOT_VARS.slot]: 'B',
        [BOOT_VARS.upgrade]: '1',
      };
      const booted: string[] = [];
      for (let boot = 0; boot < 5; boot++) {
        const d = decide(env);
        env = { ...env, ...d.save };
        booted.push(d.slot);
      }
      expect(booted).toEqual(['B', 'B', 'B', 'A', 'A']);
      expect(env[BOOT_VARS.upgrade]).toBe('0');
    }
  });
});

describe('generated U-Boot boot.cmd', () => {
  const script = renderUbootBootCmd();

  it('compiles with mkimage into a boot.scr', () => {
    writeFileSync(join(work, 'boot.cmd'), script);
    execFileSync('mkimage', [
      '-A',
      'arm64',
      '-T',
      'script',
      '-C',
      'none',
      '-d',
      join(work, 'boot.cmd'),
      join(work, 'boot.scr'),
    ]);
    expect(readFileSync(join(work, 'boot.scr')).length).toBeGreaterThan(script.length);
  });

  it('boots the committed slot from its partition with panic= and flotilla.slot=, saving nothing', () => {
    const run = runBootCmd(script, factoryBootVars('B'), both);
    expect(run.booted).toBe('B');
    expect(run.saved).toBeNull();
    expect(run.loads).toEqual([`${partB} ${SLOT_KERNEL_PATH}`, `${partB} ${SLOT_INITRD_PATH}`]);
    expect(run.bootargs).toContain(`panic=${KERNEL_PANIC_SECONDS}`);
    expect(run.bootargs).toContain('root=PARTLABEL=rootfs-B');
    expect(run.bootargs).toContain('flotilla.slot=B');
  });

  it('agrees with the contract on every trial boot, saving the env before the kernel starts', () => {
    let env: Record<string, string> = { ...factoryBootVars('A'), flotilla_slot: 'B', upgrade_available: '1' };
    for (let boot = 0; boot < 5; boot++) {
      const expected = decideUbootBoot(env);
      const run = runBootCmd(script, env, both);
      expect(run.booted).toBe(expected.slot);
      if (Object.keys(expected.save).length === 0) expect(run.saved).toBeNull();
      for (const [k, v] of Object.entries(expected.save)) expect(run.saved?.[k]).toBe(v);
      env = run.env;
    }
    expect(env.flotilla_slot).toBe('A');
  });

  it('resets after a failed kernel load, having counted the attempt (a missing kernel cannot hang a trial)', () => {
    const onlyA = new Set(kernelOf(partA));
    const run = runBootCmd(
      script,
      { ...factoryBootVars('A'), flotilla_slot: 'B', upgrade_available: '1' },
      onlyA,
    );
    expect(run.booted).toBeNull();
    expect(run.reset).toBe(true);
    expect(run.saved?.bootcount).toBe('1');
  });
});

describe('generated grub.cfg', () => {
  const cfg = renderGrubCfg();

  it('passes grub-script-check', () => {
    writeFileSync(join(work, 'grub.cfg'), cfg);
    execFileSync('grub-script-check', [join(work, 'grub.cfg')]);
  });

  it('never waits at a menu, counts down every allowed bootlimit, has a fallback entry and panic=', () => {
    expect(cfg).toMatch(/^set timeout=0$/m);
    expect(cfg).toMatch(/^set fallback=1$/m);
    for (let n = 1; n <= MAX_BOOTLIMIT; n++) expect(cfg).toContain(`= "${n}" ]; then set boot_left=${n - 1}`);
    expect(cfg).toContain(`panic=${KERNEL_PANIC_SECONDS}`);
    expect(cfg).toContain(
      `then set part=${slotPartitionNumber('x86_64', 'B')}; else set part=${slotPartitionNumber('x86_64', 'A')}; fi`,
    );
    expect(cfg.match(/menuentry/g)).toHaveLength(2);
  });
});
