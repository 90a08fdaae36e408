import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FRAME_SEGMENT, MODE_BROTLI, MODE_STORED } from '../src/format.js';
import { applyDelta, createDelta, DELTA_ERRORS, type DeltaErrorCode, isDeltaError } from '../src/index.js';
import { frames, HEADER, refreshChecksums } from './forge.js';
import { makeDelta, memoryBase, memorySink, seeded } from './helpers.js';

const base = seeded(300_000, 21);
const target = Buffer.concat([base.subarray(0, 100_000), seeded(20_000, 22), base.subarray(90_000)]);
let delta: Buffer;
let dir: string;

beforeAll(async () => {
  delta = await makeDelta(base, target, { segmentSize: 64 * 1024 });
  dir = await mkdtemp(join(tmpdir(), 'flotilla-delta-bad-'));
  await writeFile(join(dir, 'base.img'), base);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Applies into a real file target and checks the error code and that nothing was left behind. */
async function expectRejected(d: Buffer, code: DeltaErrorCode, b: Uint8Array = base): Promise<void> {
  const sink = memorySink();
  const err = await applyDelta({ base: memoryBase(b), delta: d, target: sink }).catch((e: unknown) => e);
  expect(isDeltaError(err), String(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  expect(sink.committed).toBe(false);

  await writeFile(join(dir, 'delta.bin'), d);
  await writeFile(join(dir, 'base-used.img'), b);
  const fileErr = await applyDelta({
    base: join(dir, 'base-used.img'),
    delta: join(dir, 'delta.bin'),
    target: join(dir, 'out.img'),
  }).catch((e: unknown) => e);
  expect((fileErr as { code: string }).code).toBe(code);
  const left = (await readdir(dir)).filter((f) => f.includes('out.img'));
  expect(left).toEqual([]);
}

describe('bad input', () => {
  it('every registry entry has a FLOTILLA_ERR_DELTA_ code, a message and a hint', () => {
    for (const [code, e] of Object.entries(DELTA_ERRORS)) {
      expect(code).toMatch(/^FLOTILLA_ERR_DELTA_[A-Z_]+$/);
      expect(e.message.length).toBeGreaterThan(5);
      expect(e.hint.length).toBeGreaterThan(5);
    }
  });

  it('rejects a delta whose base is not the active slot, before writing anything', async () => {
    const other = Buffer.from(base);
    other[123_456] = other[123_456]! ^ 1;
    const sink = memorySink();
    await expect(applyDelta({ base: memoryBase(other), delta, target: sink })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_DELTA_BASE_MISMATCH',
    });
    expect(sink.chunks).toEqual([]);
    expect(sink.begun).toBe(false);
    await expectRejected(delta, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH', other);
  });

  it('rejects a base shorter than the delta says', async () => {
    await expectRejected(delta, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH', base.subarray(0, base.length - 1));
  });

  it('rejects a delta cut at any point as truncated (or not a delta when even the magic is cut)', async () => {
    const cuts = new Set([0, 3, 8, 50, 99, 100, 101, 102, 110, delta.length - 12, delta.length - 1]);
    // (a cut right before the end byte leaves a delta without its end marker: truncated too)
    for (const f of frames(delta)) for (const k of [0, 1, 2, 5, 8, 9]) cuts.add(f.at + k);
    for (let i = 0; i < 40; i++) cuts.add(Math.floor(((i + 0.5) * delta.length) / 40));
    for (const cut of [...cuts].filter((c) => c < delta.length)) {
      const err = await applyDelta({
        base: memoryBase(base),
        delta: delta.subarray(0, cut),
        target: memorySink(),
      }).catch((e: unknown) => e);
      const want = cut < 8 ? 'FLOTILLA_ERR_DELTA_NOT_A_DELTA' : 'FLOTILLA_ERR_DELTA_TRUNCATED';
      expect((err as { code: string }).code, `cut at ${cut}`).toBe(want);
    }
    await expectRejected(delta.subarray(0, delta.length - 10), 'FLOTILLA_ERR_DELTA_TRUNCATED');
  });

  it('rejects a corrupted header byte anywhere in the header', async () => {
    for (let i = 8; i < HEADER; i++) {
      const d = Buffer.from(delta);
      d[i] = d[i]! ^ 0x10;
      const err = await applyDelta({ base: memoryBase(base), delta: d, target: memorySink() }).catch(
        (e: unknown) => e,
      );
      expect((err as { code: string }).code, `byte ${i}`).toBe('FLOTILLA_ERR_DELTA_HEADER_CORRUPT');
    }
    const d = Buffer.from(delta);
    d[40] = d[40]! ^ 1;
    await expectRejected(d, 'FLOTILLA_ERR_DELTA_HEADER_CORRUPT');
  });

  it('rejects a file that is not a delta', async () => {
    await expectRejected(Buffer.from('#!/bin/sh\necho not a delta\n'), 'FLOTILLA_ERR_DELTA_NOT_A_DELTA');
  });

  it('rejects a newer format version even with a valid checksum', async () => {
    const d = Buffer.from(delta);
    d.writeUInt16LE(2, 8);
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_UNSUPPORTED_VERSION');
  });

  it('rejects a corrupted payload byte (checksum) and a forged payload behind a valid checksum', async () => {
    const [first] = frames(delta);
    const d = Buffer.from(delta);
    d[first!.crcAt + 4 + 3] = d[first!.crcAt + 4 + 3]! ^ 0x40;
    await expectRejected(d, 'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT');
    // Same flip with checksums recomputed: the brotli stream or the records must catch it.
    const forged = refreshChecksums(d);
    const err = await applyDelta({ base: memoryBase(base), delta: forged, target: memorySink() }).catch(
      (e: unknown) => e,
    );
    expect(['FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT', 'FLOTILLA_ERR_DELTA_TARGET_MISMATCH']).toContain(
      (err as { code: string }).code,
    );
  });

  it('rejects a delta claiming a huge target without allocating it', async () => {
    const d = Buffer.from(delta);
    d.writeBigUInt64LE(1n << 50n, 56);
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_SIZE_LIMIT');
    d.writeBigUInt64LE(1n << 62n, 56);
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_SIZE_LIMIT');
  });

  it('rejects a segment claiming streams larger than a segment, before reading them', async () => {
    const [first] = frames(delta);
    const huge = { mode: MODE_BROTLI, raw: 0xffff_ff00, packed: 0xffff_fe00 };
    const forged = encodeFrame(
      {
        kind: FRAME_SEGMENT,
        targetLength: 64 * 1024,
        addLength: 0,
        streams: [
          { mode: MODE_STORED, raw: 10, packed: 10 },
          { ...huge, raw: 0, packed: 0, mode: 0 },
          { ...huge, raw: 0, packed: 0, mode: 0 },
          huge,
        ],
        sharedPacked: 0,
      },
      [],
    );
    const d = Buffer.concat([delta.subarray(0, first!.at), forged, delta.subarray(first!.crcAt + 4)]);
    const before = process.memoryUsage().arrayBuffers;
    await expectRejected(d, 'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('rejects a delta whose segments make more or fewer bytes than its header says', async () => {
    const d = Buffer.from(delta);
    d.writeBigUInt64LE(BigInt(target.length - 1), 56);
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT');
    d.writeBigUInt64LE(BigInt(target.length + 1), 56);
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_PAYLOAD_CORRUPT');
  });

  it('rejects trailing garbage after the end frame', async () => {
    await expectRejected(Buffer.concat([delta, Buffer.from([0])]), 'FLOTILLA_ERR_DELTA_TRAILING_DATA');
    await expectRejected(Buffer.concat([delta, delta]), 'FLOTILLA_ERR_DELTA_TRAILING_DATA');
  });

  it('rejects output that does not hash to the promised target and removes it', async () => {
    const d = Buffer.from(delta);
    d[70] = d[70]! ^ 0xff; // target sha256 inside the header
    await expectRejected(refreshChecksums(d), 'FLOTILLA_ERR_DELTA_TARGET_MISMATCH');
  });

  it('refuses a delta for another target than the signed manifest names, before reading the base', async () => {
    const b = memoryBase(base);
    const sink = memorySink();
    await expect(
      applyDelta({ base: b, delta, target: sink, expectedTargetSha256: '00'.repeat(32) }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_DELTA_TARGET_MISMATCH' });
    expect(b.reads).toBe(0);
    expect(sink.begun).toBe(false);
  });

  it('refuses to write its output over its base', async () => {
    const p = join(dir, 'base.img');
    await expect(applyDelta({ base: p, delta, target: p })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT',
    });
    expect((await readFile(p)).equals(base)).toBe(true);
    await expect(createDelta({ basePath: p, targetPath: p, outPath: p })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_DELTA_OUTPUT_IS_INPUT',
    });
  });

  it('reports a missing input as an I/O error and leaves no partial delta', async () => {
    await expect(
      createDelta({
        basePath: join(dir, 'nope'),
        targetPath: join(dir, 'base.img'),
        outPath: join(dir, 'x.fd'),
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_DELTA_IO' });
    expect((await readdir(dir)).filter((f) => f.includes('x.fd'))).toEqual([]);
  });
});
