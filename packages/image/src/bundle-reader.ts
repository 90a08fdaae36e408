/**
 * Streaming reader of `.flot` bundles — what the agent uses for local installs and the CLI for
 * `bundle verify`, `disk build` and `flash`. Imports only node:crypto and @flotilla/protocol.
 *
 * API
 *   readBundle(source, opts): AsyncGenerator<BundlePart>
 *     source  any AsyncIterable<Uint8Array> (fs.createReadStream(path), an HTTP body, …); read
 *             once, front to back, never seeking back.
 *     opts    { root: RootMetadata (already trusted), now: Date, allowKinds?: ['release'] |
 *             ['recovery'] | both (default ['release']), device?: { hardware, securityVersion } }
 *     yields, in this order, each only after it has been verified:
 *       { type: 'manifest', manifest, signed, header }   signature threshold of the role the kind
 *             needs, expiry, schema (protocol verifyRelease), then the device rules if `device`
 *             is given (checkInstallable), then the header's sections against the manifest —
 *             all before a single payload byte is read;
 *       { type: 'sbom', bytes }                          hash equals the signed SBOM digest;
 *       { type: 'chunk', index, offset, data }           one manifest chunk, its hash checked;
 *       { type: 'end', imageSha256, bundleBytes }        whole-image hash checked, no bytes after.
 *     Throws a coded error (FLOTILLA_ERR_BUNDLE_* / FLOTILLA_ERR_* of protocol) at the first
 *     problem. A consumer must treat what it wrote as unusable until it has seen 'end'.
 *   verifyBundle(source, opts) → BundleSummary   reads the whole bundle, keeps nothing but the SBOM.
 *   readBundleHeader(source) → BundleHeader      the header only, *unverified* (for `inspect`).
 *
 * Memory: one chunk (manifest chunkSize, at most IMAGE_LIMITS.maxChunkSize) plus the header
 * (at most IMAGE_LIMITS.maxBundleHeaderBytes) and the SBOM (at most IMAGE_LIMITS.maxSbomBytes).
 */
import { createHash } from 'node:crypto';
import {
  BundleHeader,
  checkInstallable,
  type DeviceFacts,
  isFlotillaError,
  parseJson,
  type ReleaseManifest,
  type RootMetadata,
  type SignedRelease,
  validate,
  verifyRelease,
} from '@flotilla/protocol';
import { BUNDLE_MAGIC, BUNDLE_SECTION_ORDER } from './bundle-format.js';
import { ImageError } from './errors.js';
import { IMAGE_LIMITS } from './limits.js';

export interface ReadBundleOptions {
  root: RootMetadata;
  now: Date;
  allowKinds?: ReleaseManifest['kind'][];
  device?: DeviceFacts;
}

export type BundlePart =
  | { type: 'manifest'; manifest: ReleaseManifest; signed: SignedRelease; header: BundleHeader }
  | { type: 'sbom'; bytes: Buffer }
  | { type: 'chunk'; index: number; offset: number; data: Buffer }
  | { type: 'end'; imageSha256: string; bundleBytes: number };

export interface BundleSummary {
  manifest: ReleaseManifest;
  signed: SignedRelease;
  sbom: Buffer;
  imageSha256: string;
  bundleBytes: number;
}

/** Pulls exact byte counts out of an async byte stream, keeping the rest for the next call. */
class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;
  consumed = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes (at least 1), or null at the end of the stream. */
  async some(max: number): Promise<Buffer | null> {
    if (this.pending.length === 0) {
      if (this.ended) return null;
      const next = await this.it.next();
      if (next.done) {
        this.ended = true;
        return null;
      }
      this.pending = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    }
    const out = this.pending.subarray(0, max);
    this.pending = this.pending.subarray(out.length);
    this.consumed += out.length;
    return out;
  }

  async exactly(n: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const b = await this.some(n - got);
      if (!b) throw new ImageError('FLOTILLA_ERR_BUNDLE_TRUNCATED', `${what}: ${got} of ${n} bytes`);
      parts.push(b);
      got += b.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }

  async atEnd(): Promise<boolean> {
    const b = await this.some(1);
    if (!b) return true;
    this.pending = Buffer.concat([b, this.pending]);
    this.consumed -= b.length;
    return false;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

async function readHeader(r: ByteReader): Promise<BundleHeader> {
  const magic = await r.some(BUNDLE_MAGIC.length).then(async (first) => {
    if (!first) throw new ImageError('FLOTILLA_ERR_BUNDLE_NOT_A_BUNDLE', 'empty input');
    if (first.length === BUNDLE_MAGIC.length) return first;
    try {
      return Buffer.concat([first, await r.exactly(BUNDLE_MAGIC.length - first.length, 'magic')]);
    } catch {
      throw new ImageError('FLOTILLA_ERR_BUNDLE_NOT_A_BUNDLE', 'shorter than the magic');
    }
  });
  if (!magic.equals(BUNDLE_MAGIC)) throw new ImageError('FLOTILLA_ERR_BUNDLE_NOT_A_BUNDLE');
  const len = (await r.exactly(4, 'header length')).readUInt32BE(0);
  if (len > IMAGE_LIMITS.maxBundleHeaderBytes)
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_HEADER_TOO_LARGE',
      `${len} > ${IMAGE_LIMITS.maxBundleHeaderBytes} bytes`,
    );
  const bytes = await r.exactly(len, 'header');
  try {
    return validate(
      BundleHeader,
      parseJson(bytes, { maxBytes: IMAGE_LIMITS.maxBundleHeaderBytes }),
      'bundle header',
    );
  } catch (err) {
    throw new ImageError('FLOTILLA_ERR_BUNDLE_HEADER_INVALID', (err as Error).message, { cause: err });
  }
}

/** The sections must be exactly sbom + image, each with the size and hash the signed manifest names. */
function checkSections(header: BundleHeader, m: ReleaseManifest): void {
  const names = header.sections.map((s) => s.name);
  if (names.length !== BUNDLE_SECTION_ORDER.length || BUNDLE_SECTION_ORDER.some((n, i) => names[i] !== n))
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_SECTION_MISMATCH',
      `sections [${names.join(', ')}], expected [sbom, image]`,
    );
  const [sbom, image] = header.sections;
  if (sbom!.size !== m.sbom.size || sbom!.sha256 !== m.sbom.sha256)
    throw new ImageError('FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH', 'SBOM section differs from the manifest');
  if (image!.size !== m.image.size || image!.sha256 !== m.image.sha256)
    throw new ImageError('FLOTILLA_ERR_BUNDLE_SECTION_MISMATCH', 'image section differs from the manifest');
  if (m.image.chunkSize > IMAGE_LIMITS.maxChunkSize)
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_HEADER_INVALID',
      `chunk size ${m.image.chunkSize} above ${IMAGE_LIMITS.maxChunkSize}`,
    );
  if (m.sbom.size > IMAGE_LIMITS.maxSbomBytes)
    throw new ImageError(
      'FLOTILLA_ERR_BUNDLE_HEADER_INVALID',
      `SBOM of ${m.sbom.size} bytes above ${IMAGE_LIMITS.maxSbomBytes}`,
    );
}

export async function* readBundle(
  source: AsyncIterable<Uint8Array>,
  opts: ReadBundleOptions,
): AsyncGenerator<BundlePart> {
  const r = new ByteReader(source);
  try {
    const header = await readHeader(r);
    const manifest = verifyRelease(header.manifest, opts.root, opts.now, {
      allowKinds: opts.allowKinds ?? ['release'],
    });
    if (opts.device) checkInstallable(manifest, opts.device);
    checkSections(header, manifest);
    yield { type: 'manifest', manifest, signed: header.manifest, header };

    const sbom = await r.exactly(manifest.sbom.size, 'SBOM section');
    if (createHash('sha256').update(sbom).digest('hex') !== manifest.sbom.sha256)
      throw new ImageError(
        'FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH',
        'SBOM bytes do not hash to the signed digest',
      );
    yield { type: 'sbom', bytes: sbom };

    const { size, chunkSize, chunkHashes, sha256 } = manifest.image;
    const whole = createHash('sha256');
    for (let index = 0, offset = 0; offset < size; index++, offset += chunkSize) {
      const want = Math.min(chunkSize, size - offset);
      const data = await r.exactly(want, `image chunk ${index}`);
      if (createHash('sha256').update(data).digest('hex') !== chunkHashes[index])
        throw new ImageError('FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH', `chunk ${index} at offset ${offset}`);
      whole.update(data);
      yield { type: 'chunk', index, offset, data };
    }
    if (whole.digest('hex') !== sha256)
      throw new ImageError('FLOTILLA_ERR_BUNDLE_IMAGE_MISMATCH', 'whole-image hash');
    if (!(await r.atEnd()))
      throw new ImageError('FLOTILLA_ERR_BUNDLE_TRAILING_DATA', `after byte ${r.consumed}`);
    yield { type: 'end', imageSha256: sha256, bundleBytes: r.consumed };
  } finally {
    await r.close();
  }
}

/** Reads and verifies a whole bundle; throws at the first problem. */
export async function verifyBundle(
  source: AsyncIterable<Uint8Array>,
  opts: ReadBundleOptions & { onChunk?: (done: number, total: number) => void },
): Promise<BundleSummary> {
  let manifest: ReleaseManifest | undefined;
  let signed: SignedRelease | undefined;
  let sbom: Buffer = Buffer.alloc(0);
  for await (const part of readBundle(source, opts)) {
    if (part.type === 'manifest') {
      manifest = part.manifest;
      signed = part.signed;
    } else if (part.type === 'sbom') sbom = part.bytes;
    else if (part.type === 'chunk') opts.onChunk?.(part.offset + part.data.length, manifest!.image.size);
    else
      return {
        manifest: manifest!,
        signed: signed!,
        sbom,
        imageSha256: part.imageSha256,
        bundleBytes: part.bundleBytes,
      };
  }
  throw new ImageError('FLOTILLA_ERR_BUNDLE_TRUNCATED', 'reader stopped before the end');
}

/** The header only, not verified: for showing what a bundle claims (`flotilla bundle inspect`). */
export async function readBundleHeader(source: AsyncIterable<Uint8Array>): Promise<BundleHeader> {
  const r = new ByteReader(source);
  try {
    return await readHeader(r);
  } finally {
    await r.close();
  }
}

/** True for errors that mean "this bundle must not be installed" (as opposed to I/O trouble). */
export function isBundleRejection(err: unknown): boolean {
  return isFlotillaError(err) && !/_IO$|TOOL_/.test(err.code);
}
