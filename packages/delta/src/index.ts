/**
 * @flotilla/delta — binary deltas between system images.
 *
 * Make a delta (server side; both images in memory):
 *   const stats = await createDelta({ basePath, targetPath, outPath, onProgress });
 *   // stats: sizes and sha256 of base, target and delta — what a signed delta descriptor needs.
 *
 * Apply it (device side; memory bounded by one segment, whatever the image size):
 *   await applyDelta({
 *     base: '/dev/mmcblk0p2' | baseReader,          // active slot, read by position only
 *     delta: 'file.fdelta' | httpResponseBody,       // read front to back once (any AsyncIterable)
 *     target: '/path/out.img' | sink,                // inactive slot, written strictly in order
 *     expectedTargetSha256,                          // from the signed release manifest
 *     onProgress: ({ phase, done, total }) => …,     // phases: verify-base, apply
 *   });
 *
 * A `BaseReader` is `{ read(buffer, offset, length, position) → bytesRead }` (pread); only the
 * first `baseSize` bytes are used, so a slot bigger than its image is fine.
 * A `DeltaApplyTarget` sink gets `begin({targetSize, targetSha256})`, `write(chunk)` in order
 * (chunks ≤ 1 MiB, reused after `write` resolves: copy to keep), then `commit()` only once the whole output hashed to
 * the header's target sha256, or `abort(reason)` on any failure. The agent's slot writer can hash
 * its own chunks inside `write` and must treat the slot as invalid until `commit`.
 * `verifyChunks(sink, { chunkSize, chunkHashes })` wraps a sink so each chunk of the signed release
 * manifest is checked before it is written (the first wrong chunk fails the apply, unwritten).
 * The base sha256 is checked before the first byte is written. Every failure is a `DeltaError`
 * with a stable `FLOTILLA_ERR_DELTA_*` code, a message and a hint.
 */
export { type ApplyDeltaOptions, type ApplyStats, applyDelta, readDeltaHeader } from './apply.js';
export { type DeltaApplyTarget, openFileTarget } from './apply-target.js';
export { type BaseReader, openFileBase } from './base-reader.js';
export type { DeltaInput } from './byte-source.js';
export { type ChunkList, verifyChunks } from './chunk-verifier.js';
export { type EncodeOptions, type EncodeStats, encodeDelta } from './create.js';
export { type CreateDeltaOptions, createDelta } from './create-file.js';
export { DELTA_ERRORS, DeltaError, type DeltaErrorCode, isDeltaError } from './errors.js';
export { CODEC_NAME, type DeltaHeader, FORMAT_VERSION, HEADER_SIZE } from './format.js';
export { DELTA_LIMITS } from './limits.js';
export type { DeltaProgress } from './progress.js';
