import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type BuiltRelease, buildRelease, readBundle } from '@flotilla/image';
import {
  canonicalize,
  type ImageFormat,
  isFlotillaError,
  type ReleaseManifest,
  type SignedRelease,
  sha256Hex,
  verifyRelease,
} from '@flotilla/protocol';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { storageFault } from '../artifacts/storage-fault.js';
import { UploadBudget } from '../artifacts/upload-budget.js';
import { ServerError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { ServerKeys } from '../keys/server-keys.js';
import type { ServerLimits } from '../limits.js';
import type { Metrics } from '../metrics.js';
import { CHANNELS, type Channel, type Release } from '../store/repos/releases.js';
import type { Store } from '../store/store.js';
import { leadingBytesCheck, meterUpload } from './upload-meter.js';

export interface BuildParams {
  name: string;
  version: string;
  securityVersion: number;
  compatible: string[];
  format: ImageFormat;
  partitionSize: number;
  kind?: 'release' | 'recovery';
  /** What the upload is: a rootfs tarball (compression by suffix) or a finished partition image. */
  input: 'tar' | 'tar.gz' | 'tar.zst' | 'tar.xz' | 'image';
  sourceRevision?: string;
  expiresDays?: number;
}

/**
 * Releases come in two ways: a `.flot` bundle signed elsewhere (verified against the server's
 * trust root while it streams in), or a rootfs tarball / image that the server builds, chunk-
 * hashes, describes in an SBOM and signs with its release key. Either way the image and SBOM are
 * stored content-addressed and the release lands in the `dev` channel. Versions are immutable.
 */
export class ReleaseService {
  private readonly uploads: UploadBudget;

  constructor(
    private readonly store: Store,
    private readonly artifacts: ArtifactStore,
    private readonly keys: ServerKeys,
    private readonly bus: EventBus,
    private readonly limits: ServerLimits,
    private readonly clock: () => number = Date.now,
    private readonly metrics?: Metrics,
  ) {
    this.uploads = new UploadBudget(limits);
  }

  /** Uploads running now (bounded by limits.maxConcurrentUploads). */
  get uploadsInFlight(): number {
    return this.uploads.inFlight;
  }

  /**
   * A bundle is verified as it streams in: the magic and header first, then the signed manifest
   * against the trust root, then each chunk against its signed hash. Only verified chunks reach
   * the disk, and the request stops at the first bad byte (the rest is never read).
   */
  async uploadBundle(
    body: AsyncIterable<Buffer>,
    actor: string,
    declaredBytes?: number,
  ): Promise<{ release: Release; created: boolean }> {
    this.checkDeclared(declaredBytes);
    const ticket = this.uploads.admit();
    const image = this.artifacts.openTemp('.img');
    let sbomPath: string | null = null;
    try {
      let manifest: ReleaseManifest | undefined;
      let signed: SignedRelease | undefined;
      let sbom: Buffer | undefined;
      let ended = false;
      const source = meterUpload(body, { maxBytes: this.limits.maxUploadBytes, ticket });
      for await (const part of readBundle(source, {
        root: this.keys.rootMeta,
        now: new Date(this.clock()),
        allowKinds: ['release', 'recovery'],
      })) {
        if (part.type === 'manifest') {
          manifest = part.manifest;
          signed = part.signed;
          await this.checkImmutable(manifest, signed);
        } else if (part.type === 'sbom') sbom = part.bytes;
        else if (part.type === 'chunk') await image.write(part.data);
        else ended = true;
      }
      await image.close();
      if (!manifest || !signed || !sbom || !ended)
        throw new ServerError('FLOTILLA_ERR_SERVER_UPLOAD_INVALID', 'bundle ended early');
      this.artifacts.commit(image.path, manifest.image.sha256);
      sbomPath = await this.artifacts.writeTemp(sbom, '.sbom');
      this.artifacts.commit(sbomPath, manifest.sbom.sha256);
      return this.record(manifest, signed, actor, 'bundle');
    } catch (err) {
      throw asUploadError(err);
    } finally {
      ticket.release();
      await image.discard();
      if (sbomPath) await rm(sbomPath, { force: true });
    }
  }

  async buildFromUpload(
    body: AsyncIterable<Buffer>,
    p: BuildParams,
    actor: string,
    declaredBytes?: number,
  ): Promise<{ release: Release; created: boolean }> {
    const key = p.kind === 'recovery' ? this.keys.recovery : this.keys.release;
    if (!key) throw new ServerError('FLOTILLA_ERR_SERVER_NO_RELEASE_KEY', `no ${p.kind ?? 'release'} key`);
    if (await this.store.releases.get(p.version))
      throw new ServerError('FLOTILLA_ERR_SERVER_RELEASE_EXISTS', `version ${p.version}`);
    this.checkDeclared(declaredBytes);
    const ticket = this.uploads.admit();
    let work: string | null = null;
    let receivedPath: string | null = null;
    try {
      // The partition image the build writes is temporary space too, claimed before any byte is read.
      ticket.reserve(p.partitionSize);
      const received = await this.artifacts.receive(
        meterUpload(body, {
          maxBytes: this.limits.maxUploadBytes,
          ticket,
          leading: leadingBytesCheck(p.input),
        }),
      );
      receivedPath = received.path;
      // An empty raw image would otherwise be padded into a signed all-zero partition.
      if (received.size === 0)
        throw new ServerError('FLOTILLA_ERR_SERVER_UPLOAD_INVALID', 'the upload is empty');
      work = await this.artifacts.tempDir('build-');
      // Every path is fixed here: nothing of the request (name, version) names a file.
      const input = join(work, p.input === 'image' ? 'input.img' : `rootfs.${p.input}`);
      await rename(received.path, input);
      const now = new Date(this.clock());
      const building = buildRelease({
        input,
        format: p.input === 'image' ? 'raw' : p.format,
        partitionSize: p.partitionSize,
        outDir: join(work, 'out'),
        baseName: 'release',
        tmpDir: work,
        meta: {
          name: p.name,
          version: p.version,
          securityVersion: p.securityVersion,
          compatible: p.compatible,
          kind: p.kind ?? 'release',
          now,
          expiresDays: p.expiresDays,
          sourceRevision: p.sourceRevision,
        },
        signingKey: { key, role: p.kind ?? 'release' },
      });
      const built = await this.counted(building);
      const manifest = built.manifest.signed;
      await this.checkImmutable(manifest, built.manifest);
      this.artifacts.commit(built.imagePath, manifest.image.sha256);
      this.artifacts.commit(built.sbomPath, manifest.sbom.sha256);
      return this.record(manifest, built.manifest, actor, 'build');
    } catch (err) {
      throw asUploadError(err);
    } finally {
      ticket.release();
      if (receivedPath) await rm(receivedPath, { force: true });
      if (work) await rm(work, { recursive: true, force: true });
    }
  }

  /** A declared Content-Length over the cap is refused before a byte is read. */
  private checkDeclared(declaredBytes: number | undefined): void {
    if (declaredBytes !== undefined && declaredBytes > this.limits.maxUploadBytes)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE',
        `${declaredBytes} bytes declared, at most ${this.limits.maxUploadBytes}`,
      );
  }

  /**
   * Counts an image build (`flotilla_image_builds_total`) and the manifest signature it ends
   * with (`flotilla_signing_total{role="release"}`): the builder signs last, so a build that
   * returns was signed, and a key-role refusal from the builder is a failed signature.
   */
  private async counted(build: Promise<BuiltRelease>): Promise<BuiltRelease> {
    try {
      const built = await build;
      this.metrics?.imageBuilds.inc({ result: 'ok' });
      this.metrics?.signing.inc({ role: 'release', result: 'ok' });
      return built;
    } catch (err) {
      this.metrics?.imageBuilds.inc({ result: 'failed' });
      if ((err as { code?: string }).code === 'FLOTILLA_ERR_IMAGE_KEY_ROLE')
        this.metrics?.signing.inc({ role: 'release', result: 'failed' });
      throw err;
    }
  }

  /** Same version with the same signed manifest is a no-op; any difference is refused. */
  private async checkImmutable(
    m: ReleaseManifest,
    signed: SignedRelease,
    store: Store = this.store,
  ): Promise<Release | undefined> {
    const existing = await store.releases.get(m.version);
    if (!existing) return undefined;
    if (canonicalize(existing.manifest.signed) !== canonicalize(signed.signed))
      throw new ServerError('FLOTILLA_ERR_SERVER_RELEASE_EXISTS', `version ${m.version}`);
    return existing;
  }

  private async record(
    m: ReleaseManifest,
    signed: SignedRelease,
    actor: string,
    via: 'bundle' | 'build',
  ): Promise<{ release: Release; created: boolean }> {
    const now = this.clock();
    const created = await this.store.tx(async (tx) => {
      if (await this.checkImmutable(m, signed, tx)) return false;
      await tx.artifacts.add(m.image.sha256, m.image.size, 'image', now);
      await tx.artifacts.add(m.sbom.sha256, m.sbom.size, 'sbom', now);
      await tx.releases.insert(m, signed, now);
      await tx.releases.addToChannel(m.version, 'dev', now);
      await tx.audit.record(
        actor,
        'release.create',
        m.version,
        { via, image: m.image.sha256, kind: m.kind },
        now,
      );
      return true;
    });
    if (created) this.bus.emit('release.created', { version: m.version, image: m.image.sha256 });
    return { release: (await this.store.releases.get(m.version))!, created };
  }

  /** Moves a release one channel up: dev → staging → prod (never skipping one). */
  promote(version: string, to: Channel, actor: string): Promise<Release> {
    const now = this.clock();
    return this.store.tx(async (tx) => {
      const r = await tx.releases.get(version);
      if (!r) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${version}`);
      const idx = CHANNELS.indexOf(to);
      if (idx <= 0) throw new ServerError('FLOTILLA_ERR_SERVER_CHANNEL_ORDER', `cannot promote into ${to}`);
      if (!r.channels.includes(CHANNELS[idx - 1]!))
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_CHANNEL_ORDER',
          `${version} is not in ${CHANNELS[idx - 1]}`,
        );
      // Re-check the signature against today's trust root: a key may have been rotated out.
      verifyRelease(r.manifest, this.keys.rootMeta, new Date(now), { allowKinds: ['release', 'recovery'] });
      await tx.releases.addToChannel(version, to, now);
      await tx.audit.record(actor, 'release.promote', version, { to }, now);
      return (await tx.releases.get(version))!;
    });
  }

  /** Test and tooling helper: the sha256 of a manifest as stored. */
  static manifestDigest(r: Release): string {
    return sha256Hex(canonicalize(r.manifest));
  }
}

/**
 * A full disk is 507 whatever layer saw it; image and protocol errors about the upload become 4xx
 * answers; our own errors pass unchanged.
 */
function asUploadError(err: unknown): unknown {
  if (err instanceof ServerError) return err;
  const fault = storageFault(err, 'storing the upload');
  if (fault) return fault;
  if (isFlotillaError(err)) {
    const e = err as Error & { code: string };
    const trust = /SIGNATURE|KEY_|THRESHOLD|EXPIRED|WRONG_DOCUMENT/.test(e.code);
    return new ServerError(
      trust ? 'FLOTILLA_ERR_SERVER_RELEASE_INVALID' : 'FLOTILLA_ERR_SERVER_UPLOAD_INVALID',
      `${e.code}: ${e.message}`,
      {
        cause: err,
      },
    );
  }
  return err;
}
