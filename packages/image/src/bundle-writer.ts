import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type BundleHeader, canonicalBytes, SCHEMA_VERSION, type SignedRelease } from '@flotilla/protocol';
import { BUNDLE_MAGIC } from './bundle-format.js';
import { ImageError, ioError } from './errors.js';
import { IMAGE_LIMITS } from './limits.js';

export interface WriteBundleOptions {
  manifest: SignedRelease;
  imagePath: string;
  sbom: Uint8Array;
  output: string;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes a `.flot` bundle (see bundle-format.ts). The image and SBOM are checked against the
 * manifest while they are copied; on any mismatch or error nothing is left at `output`.
 */
export async function writeBundle(
  opts: WriteBundleOptions,
): Promise<{ path: string; size: number; sha256: string }> {
  const m = opts.manifest.signed;
  const sbomSha = createHash('sha256').update(opts.sbom).digest('hex');
  if (sbomSha !== m.sbom.sha256 || opts.sbom.length !== m.sbom.size)
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH',
      'the SBOM given is not the one the manifest names',
    );
  const header: BundleHeader = {
    _type: 'bundle',
    schemaVersion: SCHEMA_VERSION,
    manifest: opts.manifest,
    sections: [
      { name: 'sbom', size: m.sbom.size, sha256: m.sbom.sha256 },
      { name: 'image', size: m.image.size, sha256: m.image.sha256 },
    ],
  };
  const headerBytes = canonicalBytes(header);
  if (headerBytes.length > IMAGE_LIMITS.maxBundleHeaderBytes)
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_HEADER_TOO_LARGE',
      `${headerBytes.length} bytes: use a larger chunk size`,
    );
  const len = Buffer.alloc(4);
  len.writeUInt32BE(headerBytes.length);
  const tmp = join(dirname(opts.output), `.${Date.now()}-${process.pid}.flot.tmp`);
  const whole = createHash('sha256');
  let size = 0;
  const fh = await open(tmp, 'w').catch((err) => {
    throw ioError(`cannot write ${opts.output}`, err);
  });
  try {
    const put = async (b: Uint8Array) => {
      whole.update(b);
      size += b.length;
      await fh.write(b);
    };
    await put(BUNDLE_MAGIC);
    await put(len);
    await put(headerBytes);
    await put(opts.sbom);
    const imageHash = createHash('sha256');
    let imageBytes = 0;
    for await (const chunk of createReadStream(opts.imagePath, { highWaterMark: 1024 * 1024 })) {
      const b = chunk as Buffer;
      imageHash.update(b);
      imageBytes += b.length;
      if (imageBytes > m.image.size) break;
      await put(b);
      opts.onProgress?.(imageBytes, m.image.size);
    }
    if (imageBytes !== m.image.size || imageHash.digest('hex') !== m.image.sha256)
      throw new ImageError(
        'FLOTILLA_ERR_BUNDLE_IMAGE_MISMATCH',
        `${opts.imagePath} is not the image the manifest names`,
      );
    await fh.sync();
    await fh.close();
    await rename(tmp, opts.output);
    return { path: opts.output, size, sha256: whole.digest('hex') };
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw ioError(`cannot write bundle ${opts.output}`, err);
  }
}
