/** Every bound the codec enforces, in one place. */
export const DELTA_LIMITS = {
  /** Target bytes one segment produces by default: bounds apply memory; 4 MiB is ~1 % smaller. */
  defaultSegmentSize: 2 * 1024 * 1024,
  /** Segment sizes a decoder accepts (apply memory is about 2–3 segments plus Node itself). */
  minSegmentSize: 64 * 1024,
  maxSegmentSize: 8 * 1024 * 1024,
  /** Largest image `applyDelta` produces unless the caller raises it. */
  defaultMaxTargetSize: 64 * 1024 * 1024 * 1024,
  /** Largest image `createDelta` diffs: both images are held in memory while diffing. */
  maxCreateInputSize: 2 * 1024 * 1024 * 1024,
  /** Output is handed to the sink in chunks of at most this size. */
  outputChunkSize: 1024 * 1024,
  /** Base bytes are read in aligned blocks of this size and cached (a few blocks only). */
  baseBlockSize: 256 * 1024,
  baseCacheBlocks: 8,
  /** Hash the base in reads of this size before applying. */
  hashReadSize: 1024 * 1024,
} as const;
