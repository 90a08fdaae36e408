import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decideGrubBoot, GRUB_COMMITTED_VAR, GRUB_ENV_SIZE, renderGrubCfg } from '../src/index.js';

// A power cut while grubenv is written: what the generated grub.cfg then boots. Env blocks are made
// and parsed by grub-editenv, which shares GRUB's lib/envblk.c with load_env and save_env: a block
// without its `# GRUB Environment Block` header is refused whole, a block cut inside gives every
// `name=value\n` line before the cut. grub.cfg runs through the subset of GRUB script it uses.

const work = mkdtempSync(join(tmpdir(), 'flotilla-grub-torn-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const ENV = join(work, 'grubenv');
const COMMITTED = join(work, 'grubenv-committed');

const editenv = (file: string, ...args: string[]) =>
  spawnSync('grub-editenv', [file, ...args], { encoding: 'utf8', timeout: 10_000 });

/** GRUB's load_env: the whitelisted variables of the block, none when it is not an env block. */
function loadEnv(file: string, names: string[]): Record<string, string> {
  const r = editenv(file, 'list');
  if (r.status !== 0) return {};
  const vars: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && names.includes(line.slice(0, eq))) vars[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return vars;
}

function makeEnv(file: string, vars: Record<string, string>): Buffer {
  rmSync(file, { force: true });
  execFileSync('grub-editenv', [file, 'create']);
  execFileSync('grub-editenv', [file, 'set', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)]);
  return readFileSync(file);
}

interface GrubRun {
  env: Record<string, string>;
  /** The slot of the kernel entry 0 boots (root=PARTLABEL=rootfs-X). */
  booted: string | null;
  saved: boolean;
}

/** Runs grub.cfg: set, [ ] with = != -a, if/elif/else/fi, load_env, save_env, menuentry 0. */
function runGrubCfg(cfg: string): GrubRun {
  const env: Record<string, string> = { cmdpath: `(hd0,gpt1)/EFI/BOOT` };
  const run: GrubRun = { env, booted: null, saved: false };
  const expand = (s: string) => s.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, n: string) => env[n] ?? '');
  const words = (s: string) =>
    (s.match(/"[^"]*"|'[^']*'|\S+/g) ?? []).map((w) =>
      w.startsWith("'") ? w.slice(1, -1) : expand(w.startsWith('"') ? w.slice(1, -1) : w),
    );
  const test = (cond: string): boolean => {
    const w = words(cond.replace(/^\[\s*|\s*\]$/g, ''));
    const terms: boolean[] = [];
    for (let i = 0; i < w.length; i += 4) {
      const [a, op, b] = [w[i], w[i + 1], w[i + 2]];
      if (op !== '=' && op !== '!=') throw new Error(`test: ${cond}`);
      terms.push(op === '=' ? a === b : a !== b);
      if (w[i + 3] !== undefined && w[i + 3] !== '-a') throw new Error(`test: ${cond}`);
    }
    return terms.every(Boolean);
  };
  const hostFile = (grubPath: string) => join(work, grubPath.slice(grubPath.lastIndexOf('/') + 1));
  const command = (line: string) => {
    const w = words(line);
    if (w[0] === 'set') {
      const eq = line.indexOf('=');
      env[line.slice(4, eq).trim()] = words(line.slice(eq + 1))[0] ?? '';
    } else if (w[0] === 'load_env') Object.assign(env, loadEnv(hostFile(w[2]!), w.slice(3)));
    else if (w[0] === 'save_env') {
      const r = editenv(hostFile(w[2]!), 'set', ...w.slice(3).map((n) => `${n}=${env[n] ?? ''}`));
      run.saved = r.status === 0;
    } else if (w[0] === 'linux') run.booted = /root=PARTLABEL=rootfs-(\S+)/.exec(w.join(' '))?.[1] ?? null;
    else if (
      !['echo', 'serial', 'terminal_input', 'terminal_output', 'insmod', 'regexp', 'initrd'].includes(w[0]!)
    )
      throw new Error(`unknown command ${line}`);
  };
  const exec = (lines: string[]) => {
    // each level: is this branch running, has a branch of this if been taken
    const stack: { running: boolean; taken: boolean }[] = [];
    const live = () => stack.every((s) => s.running);
    for (const raw of lines) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const one = /^if (\[.+\]); then (.+?); (?:else (.+?); )?fi$/.exec(line);
      if (one) {
        if (live()) {
          if (test(one[1]!)) command(one[2]!);
          else if (one[3]) command(one[3]);
        }
        continue;
      }
      const open = /^(if|elif)\s+(\[.+\]); then(?: (.+))?$/.exec(line);
      if (open) {
        if (open[1] === 'if') stack.push({ running: false, taken: !live() });
        const top = stack[stack.length - 1]!;
        top.running = !top.taken && stack.slice(0, -1).every((s) => s.running) && test(open[2]!);
        top.taken ||= top.running;
        if (top.running && open[3]) command(open[3]);
      } else if (line === 'else') {
        const top = stack[stack.length - 1]!;
        top.running = !top.taken && stack.slice(0, -1).every((s) => s.running);
        top.taken = true;
      } else if (line === 'fi') stack.pop();
      else if (live()) command(line);
    }
  };
  const [main, ...entries] = cfg.split(/^menuentry .*\{$/m);
  exec(main!.split('\n'));
  const entry0 = entries[Number(env.default ?? 0)]!;
  exec(entry0.slice(0, entry0.indexOf('\n}')).split('\n'));
  return run;
}

const cfg = renderGrubCfg();
const committedB = { flotilla_slot: 'B', flotilla_good_slot: 'B', upgrade_available: '0', boot_left: '3' };
/** The agent armed a trial of A (new release) while B is committed: the case a torn env must not hurt. */
const trialOfA = {
  flotilla_slot: 'A',
  flotilla_good_slot: 'B',
  upgrade_available: '1',
  bootlimit: '3',
  boot_left: '3',
};

let lastCommitted: string | null | undefined;
function bootWith(block: Buffer, committed: string | null): GrubRun {
  writeFileSync(ENV, block);
  if (committed !== lastCommitted) {
    if (committed) makeEnv(COMMITTED, { [GRUB_COMMITTED_VAR]: committed });
    else rmSync(COMMITTED, { force: true });
    lastCommitted = committed;
  }
  return runGrubCfg(cfg);
}

const header = Buffer.from('# GRUB Environment Block\n');
const padded = (b: Buffer, fill: number) => Buffer.concat([b, Buffer.alloc(GRUB_ENV_SIZE - b.length, fill)]);

describe('grub.cfg with a torn grubenv', () => {
  it('boots a committed B from a whole env and writes nothing', () => {
    const run = bootWith(makeEnv(ENV, committedB), 'B');
    expect(run.booted).toBe('B');
    expect(run.saved).toBe(false);
  });

  it('a zeroed block (no header: load_env loads nothing) boots the committed slot B, not A', () => {
    const zero = Buffer.alloc(GRUB_ENV_SIZE);
    expect(bootWith(zero, 'B').booted).toBe('B');
    expect(editenv(ENV, 'list').stderr).toContain('invalid environment block');
    expect(decideGrubBoot(loadEnv(ENV, Object.keys(trialOfA)), 'B').slot).toBe('B');
    // without grubenv-committed (a disk from before it) there is nothing to go by: slot A
    expect(bootWith(zero, null).booted).toBe('A');
  });

  it('a block with only its header (GRUB loads it, with no variables) boots the committed slot', () => {
    for (const fill of [0, 0x23]) {
      const run = bootWith(padded(header, fill), 'B');
      expect(run.env.flotilla_slot).toBe('B');
      expect(run.booted).toBe('B');
    }
  });

  it('a trial of A cut anywhere inside its variables boots the committed B; only the whole block boots A', () => {
    const whole = makeEnv(ENV, trialOfA);
    const text = whole.toString('latin1');
    const varsEnd = text.indexOf('boot_left=3\n') + 'boot_left=3\n'.length;
    const booted = new Map<string, number>();
    for (let cut = header.length; cut <= varsEnd; cut++) {
      for (const fill of [0, 0x23]) {
        const block = padded(whole.subarray(0, cut), fill);
        const run = bootWith(block, 'B');
        // grub.cfg and the contract's decideGrubBoot agree on every cut
        const loaded = loadEnv(ENV, [
          'flotilla_slot',
          'flotilla_good_slot',
          'upgrade_available',
          'boot_left',
        ]);
        expect(run.booted, `cut at ${cut}`).toBe(decideGrubBoot(loaded, 'B').slot);
        const key = cut === varsEnd ? 'whole' : 'cut';
        booted.set(`${key}:${run.booted}`, (booted.get(`${key}:${run.booted}`) ?? 0) + 1);
      }
    }
    // cut anywhere: B (the committed slot, or the trial's fallback); the whole block: the trial of A
    expect([...booted.keys()].sort()).toEqual(['cut:B', 'whole:A']);
  });

  it("a trial boot counts down with save_env; GRUB's rewrite cut mid-line boots the good slot", () => {
    const trialOfB = { ...trialOfA, flotilla_slot: 'B', flotilla_good_slot: 'A' };
    const run = bootWith(makeEnv(ENV, trialOfB), 'A');
    expect(run.booted).toBe('B');
    expect(run.saved).toBe(true);
    const counted = readFileSync(ENV);
    expect(loadEnv(ENV, ['boot_left']).boot_left).toBe('2');
    // the same 1 KiB rewritten in place and cut inside upgrade_available's line
    const cut = counted.toString('latin1').indexOf('upgrade_available=') + 10;
    expect(bootWith(padded(counted.subarray(0, cut), 0), 'A').booted).toBe('A');
  });
});
