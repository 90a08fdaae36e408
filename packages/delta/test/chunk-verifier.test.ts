import { describe, expect, it } from 'vitest';
import { applyDelta, verifyChunks } from '../src/index.js';
import { makeDelta, memoryBase, memorySink, seeded, sha256 } from './helpers.js';

const base = seeded(700_000, 51);
const target = Buffer.concat([base.subarray(0, 200_000), seeded(3000, 52), base.subarray(200_000)]);
const chunkSize = 64 * 1024;
const hashes: string[] = [];
for (let at = 0; at < target.length; at += chunkSize)
  hashes.push(sha256(target.subarray(at, at + chunkSize)));

describe('verifyChunks', () => {
  it('passes every manifest chunk through to the slot when each hash matches', async () => {
    const delta = await makeDelta(base, target);
    const slot = memorySink();
    await applyDelta({
      base: memoryBase(base),
      delta,
      target: verifyChunks(slot, { chunkSize, chunkHashes: hashes }),
    });
    expect(slot.bytes().equals(target)).toBe(true);
    expect(slot.chunks.every((c, i) => i === slot.chunks.length - 1 || c.length === chunkSize)).toBe(true);
    expect(slot.committed).toBe(true);
  });

  it('stops at the first chunk that does not match the signed manifest, before writing it', async () => {
    const delta = await makeDelta(base, target);
    const bad = [...hashes];
    bad[3] = sha256(Buffer.from('not this chunk'));
    const slot = memorySink();
    const err = await applyDelta({
      base: memoryBase(base),
      delta,
      target: verifyChunks(slot, { chunkSize, chunkHashes: bad }),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'FLOTILLA_ERR_DELTA_TARGET_MISMATCH', details: { chunk: 3 } });
    expect(slot.bytes().equals(target.subarray(0, 3 * chunkSize))).toBe(true);
    expect(slot.aborted).toBe(true);
    expect(slot.committed).toBe(false);
  });

  it('refuses a delta whose target has another number of chunks than the manifest, before writing', async () => {
    const delta = await makeDelta(base, target);
    const slot = memorySink();
    await expect(
      applyDelta({
        base: memoryBase(base),
        delta,
        target: verifyChunks(slot, { chunkSize, chunkHashes: hashes.slice(1) }),
      }),
    ).rejects.toMatchObject({ code: 'FLOTILLA_ERR_DELTA_TARGET_MISMATCH' });
    expect(slot.chunks).toEqual([]);
  });
});
