import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The firmware build scripts refuse bad input with a coded error, a hint and the exit status
 * (2 for a bad argument, 1 for a failed build) before any real build starts. They run the
 * compiled packages (`tsc -b`, as `pnpm test` does first).
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

function runScript(script: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repo, script), ...args],
      { cwd: repo, timeout: 60_000 },
      (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ status, stdout, stderr });
      },
    );
  });
}

/** stderr's `error CODE: message` / `hint: …` pair. */
function printed(run: Run): { code?: string; hint?: string } {
  return {
    code: /^error (FLOTILLA_ERR_[A-Z_]+): /m.exec(run.stderr)?.[1],
    hint: /^hint: (.+)$/m.exec(run.stderr)?.[1],
  };
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'flotilla-fw-args-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('firmware-images/boot/build.mjs', () => {
  const script = 'firmware-images/boot/build.mjs';

  it('refuses an unknown --arch with FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH, exit 2', async () => {
    const run = await runScript(script, ['--arch', 'riscv64', '--keys', scratch]);
    expect(run.status).toBe(2);
    expect(printed(run)).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH', hint: expect.any(String) });
    expect(run.stderr).toContain("'riscv64'");
  });

  it('refuses a missing --keys with FLOTILLA_ERR_IMAGE_KEY_MISSING, exit 2', async () => {
    const run = await runScript(script, ['--arch', 'x86_64']);
    expect(run.status).toBe(2);
    expect(printed(run)).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_KEY_MISSING', hint: expect.any(String) });
  });

  it('refuses an unknown flag with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT, exit 2, and --json prints one JSON line', async () => {
    const run = await runScript(script, ['--json', '--archh', 'x86_64']);
    expect(run.status).toBe(2);
    expect(JSON.parse(run.stdout)).toMatchObject({
      ok: false,
      code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT',
      message: expect.stringContaining('--archh'),
      hint: expect.any(String),
    });
  });

  it('refuses a cached input whose sha256 differs from the lock with FLOTILLA_ERR_IMAGE_PIN_MISMATCH, exit 1', async () => {
    // The lock's first input, already "in the cache" but with other bytes: refused before any fetch.
    const lock = await readFile(join(repo, 'firmware-images/boot/packages.x86_64.lock'), 'utf8');
    const first = lock.split('\n').find((l) => l.trim() && !l.startsWith('#'));
    const [kind, name, version] = first!.trim().split(/\s+/);
    expect(kind).toBe('deb');
    const cache = join(scratch, 'cache');
    await mkdir(join(cache, 'debs'), { recursive: true });
    const tampered = join(cache, 'debs', `${name}_${version!.replace(/:/g, '%3a')}_amd64.deb`);
    await writeFile(tampered, 'not the pinned package');
    const out = join(scratch, 'out');
    const run = await runScript(script, [
      '--arch',
      'x86_64',
      '--keys',
      scratch,
      '--cache',
      cache,
      '--out',
      out,
    ]);
    expect(run.status).toBe(1);
    expect(printed(run)).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_PIN_MISMATCH', hint: expect.any(String) });
    expect(run.stderr).toContain(tampered);
    expect(await readdir(join(out, 'x86_64'))).toEqual([]);
  });
});

describe('firmware-images/build.mjs', () => {
  const script = 'firmware-images/build.mjs';

  it('refuses a run without --keys or --generate-test-keys with FLOTILLA_ERR_IMAGE_KEY_MISSING, exit 2', async () => {
    const out = join(scratch, 'demo-out');
    const run = await runScript(script, ['--out', out]);
    expect(run.status).toBe(2);
    expect(printed(run)).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_KEY_MISSING', hint: expect.any(String) });
    expect(run.stderr).toContain('--generate-test-keys');
  });

  it('refuses an unknown flag with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT, exit 2', async () => {
    const run = await runScript(script, ['--key', scratch]);
    expect(run.status).toBe(2);
    expect(printed(run)).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', hint: expect.any(String) });
  });
});

describe('firmware-images/uboot/build-uboot.mjs', () => {
  it('refuses --jobs 0 with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT, exit 2', async () => {
    const run = await runScript('firmware-images/uboot/build-uboot.mjs', ['--jobs', '0', '--cache', scratch]);
    expect(run.status).toBe(2);
    expect(printed(run)).toEqual({ code: 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', hint: 'pass 1 to 64' });
  });
});
