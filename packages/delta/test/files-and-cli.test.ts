import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyDelta, createDelta, readDeltaHeader } from '../src/index.js';
import { memoryBase, seeded, sha256 } from './helpers.js';

// The CLI runs compiled, with plain node, as on a device (`pnpm test` builds first).
const CLI = fileURLToPath(new URL('../../cli/dist/bin/flotilla.js', import.meta.url));

let dir: string;
const base = seeded(700_000, 41);
const target = Buffer.concat([base.subarray(0, 300_000), seeded(7777, 42), base.subarray(310_000)]);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-delta-files-'));
  await writeFile(join(dir, 'old.img'), base);
  await writeFile(join(dir, 'new.img'), target);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function flotilla(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout.trim()) };
}

describe('file API', () => {
  it('creates and applies through files, leaving only the finished outputs', async () => {
    const stats = await createDelta({
      basePath: join(dir, 'old.img'),
      targetPath: join(dir, 'new.img'),
      outPath: join(dir, 'api.fdelta'),
    });
    const bytes = await readFile(join(dir, 'api.fdelta'));
    expect(stats.deltaSize).toBe(bytes.length);
    expect(stats.deltaSha256).toBe(sha256(bytes));
    expect(stats.targetSha256).toBe(sha256(target));
    expect(await readDeltaHeader(join(dir, 'api.fdelta'))).toMatchObject({
      baseSize: base.length,
      targetSize: target.length,
      baseSha256: sha256(base),
    });
    await applyDelta({
      base: join(dir, 'old.img'),
      delta: join(dir, 'api.fdelta'),
      target: join(dir, 'api.out'),
    });
    expect((await readFile(join(dir, 'api.out'))).equals(target)).toBe(true);
    expect((await readdir(dir)).filter((f) => f.includes('partial'))).toEqual([]);
  });

  it('replaces an existing output only after the new one verified', async () => {
    await writeFile(join(dir, 'keep.out'), 'previous');
    const err = await applyDelta({
      base: join(dir, 'new.img'), // wrong base
      delta: join(dir, 'api.fdelta'),
      target: join(dir, 'keep.out'),
    }).catch((e: unknown) => e);
    expect((err as { code: string }).code).toBe('FLOTILLA_ERR_DELTA_BASE_MISMATCH');
    expect(await readFile(join(dir, 'keep.out'), 'utf8')).toBe('previous');
  });
});

/** Files this process holds open (Linux: /proc/self/fd). */
function openFiles(): string[] {
  const held: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      held.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed between the listing and the readlink
    }
  }
  return held;
}

describe('an apply whose target never returns (an agent frozen by a simulated power cut)', () => {
  it('closes the delta file as soon as its signal aborts', async () => {
    const deltaPath = join(dir, 'frozen.fdelta');
    await createDelta({
      basePath: join(dir, 'old.img'),
      targetPath: join(dir, 'new.img'),
      outPath: deltaPath,
    });
    const abort = new AbortController();
    let firstWrite!: () => void;
    const writing = new Promise<void>((resolve) => {
      firstWrite = resolve;
    });
    const applying = applyDelta({
      base: memoryBase(base),
      delta: deltaPath,
      target: {
        write: () => {
          firstWrite();
          return new Promise<void>(() => {});
        },
        commit: async () => undefined,
        abort: async () => undefined,
      },
      signal: abort.signal,
    });
    void applying.catch(() => undefined);
    await writing;
    expect(openFiles()).toContain(deltaPath);
    abort.abort();
    // the close completes on a later turn of the event loop: wait for it, bounded
    for (let turn = 0; turn < 200 && openFiles().includes(deltaPath); turn++)
      await new Promise((r) => setTimeout(r, 10));
    expect(openFiles()).not.toContain(deltaPath);
  });
});

describe('flotilla delta (compiled CLI)', () => {
  it('is built', () => {
    expect(existsSync(CLI), `${CLI} missing: run npx tsc -b`).toBe(true);
  });

  it('create, info and apply exit 0 and print JSON stats', () => {
    const c = flotilla([
      'delta',
      'create',
      join(dir, 'old.img'),
      join(dir, 'new.img'),
      join(dir, 'cli.fd'),
      '--json',
    ]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.json()).toMatchObject({ ok: true, targetSha256: sha256(target), baseSize: base.length });
    const i = flotilla(['delta', 'info', join(dir, 'cli.fd'), '--json']);
    expect(i.json()).toMatchObject({ ok: true, codec: 'flotilla-bsdiff-brotli', targetSize: target.length });
    const a = flotilla([
      'delta',
      'apply',
      join(dir, 'old.img'),
      join(dir, 'cli.fd'),
      join(dir, 'cli.out'),
      '--json',
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.json()).toMatchObject({ ok: true, targetSha256: sha256(target) });
  });

  it('apply with the wrong base exits 1 with the coded error and a hint, and writes nothing', () => {
    const a = flotilla(['delta', 'apply', join(dir, 'new.img'), join(dir, 'cli.fd'), join(dir, 'wrong.out')]);
    expect(a.code).toBe(1);
    expect(a.stderr).toContain('FLOTILLA_ERR_DELTA_BASE_MISMATCH');
    expect(a.stderr).toContain('hint:');
    expect(existsSync(join(dir, 'wrong.out'))).toBe(false);
    const j = flotilla([
      'delta',
      'apply',
      join(dir, 'new.img'),
      join(dir, 'cli.fd'),
      join(dir, 'wrong.out'),
      '--json',
    ]);
    expect(j.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_DELTA_BASE_MISMATCH' } });
  });

  it('apply refuses a target other than --expect-sha256', () => {
    const a = flotilla([
      'delta',
      'apply',
      join(dir, 'old.img'),
      join(dir, 'cli.fd'),
      join(dir, 'x.out'),
      '--expect-sha256',
      'ab'.repeat(32),
    ]);
    expect(a.code).toBe(1);
    expect(a.stderr).toContain('FLOTILLA_ERR_DELTA_TARGET_MISMATCH');
  });
});
