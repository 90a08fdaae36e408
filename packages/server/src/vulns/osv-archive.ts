import { createReadStream } from 'node:fs';
import { Unzip, UnzipInflate } from 'fflate';
import { VulnsError } from './errors.js';

export interface ArchiveLimits {
  /** Largest single record once inflated. */
  maxOsvRecordBytes: number;
  /** Largest sum of inflated entries (a zip bomb stops here, counted on real output, not headers). */
  maxOsvInflatedBytes: number;
  /** Most entries. */
  maxOsvRecords: number;
}

export interface ArchiveEntry {
  name: string;
  bytes: Uint8Array;
}

/**
 * Reads the `.json` entries of a zip (osv.dev publishes one `all.zip` per ecosystem) with fflate's
 * streaming unzip. Sizes are counted on the bytes inflation really produces, so a header that lies
 * about the size cannot get past the limits; entries that are not `.json` (directories, a README)
 * are ignored. Stored (0) and deflated (8) entries are read; any other method is refused.
 */
export async function readOsvZip(path: string, limits: ArchiveLimits): Promise<ArchiveEntry[]> {
  const out: ArchiveEntry[] = [];
  let failure: VulnsError | null = null;
  let inflated = 0;
  let entries = 0;
  const fail = (e: VulnsError) => {
    failure ??= e;
  };
  const unzip = new Unzip((file) => {
    if (failure || file.name.endsWith('/') || !file.name.toLowerCase().endsWith('.json')) return;
    if (++entries > limits.maxOsvRecords) {
      fail(
        new VulnsError('FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE', `more than ${limits.maxOsvRecords} records`),
      );
      return;
    }
    if (file.compression !== 0 && file.compression !== 8) {
      fail(
        new VulnsError(
          'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
          `${file.name}: zip compression method ${file.compression} (only stored and deflate are read)`,
        ),
      );
      return;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    file.ondata = (err, data, final) => {
      if (failure) return;
      if (err) {
        fail(new VulnsError('FLOTILLA_ERR_VULNS_IMPORT_INVALID', `${file.name}: ${err.message}`));
        file.terminate();
        return;
      }
      size += data.length;
      inflated += data.length;
      if (size > limits.maxOsvRecordBytes || inflated > limits.maxOsvInflatedBytes) {
        fail(
          new VulnsError(
            'FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE',
            size > limits.maxOsvRecordBytes
              ? `${file.name}: inflates past ${limits.maxOsvRecordBytes} bytes`
              : `the archive inflates past ${limits.maxOsvInflatedBytes} bytes (at ${file.name})`,
          ),
        );
        file.terminate();
        return;
      }
      chunks.push(data);
      if (final) out.push({ name: file.name, bytes: Buffer.concat(chunks) });
    };
    file.start();
  });
  unzip.register(UnzipInflate);
  // Small reads: deflate expands at most ~1032:1, so one pushed chunk inflates to ≤ ~17 MB before
  // the size check sees it.
  let sawData = false;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 16 * 1024 })) {
      sawData = true;
      unzip.push(chunk as Buffer);
      if (failure) break;
    }
    if (!failure) unzip.push(new Uint8Array(0), true);
  } catch (err) {
    fail(
      new VulnsError('FLOTILLA_ERR_VULNS_IMPORT_INVALID', `not a readable zip: ${(err as Error).message}`),
    );
  }
  if (failure) throw failure;
  if (!sawData || out.length === 0)
    throw new VulnsError('FLOTILLA_ERR_VULNS_IMPORT_INVALID', 'the archive holds no .json records');
  return out;
}
