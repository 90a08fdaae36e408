import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  checkNotExpired,
  parseJson,
  type RootMetadata,
  verifyInitialRoot,
  verifyRootRotation,
} from '@flotilla/protocol';
import { atomicWriteFile, readBounded } from '../fs-util.js';

const MAX_ROOT_BYTES = 1024 * 1024;

/** The device's trust root: shipped in the image, rotated only by a root signed by old *and* new keys. */
export interface TrustStore {
  load(now: Date): Promise<RootMetadata>;
  /** Verifies a new root against the trusted one and keeps it; returns the new root. */
  rotate(envelope: unknown, now: Date): Promise<RootMetadata>;
}

/**
 * `<dir>/root.json` is the trusted root. Newer roots dropped in as `<dir>/root.<version>.json`
 * (by an image update or `flotilla-agent trust rotate`) are applied in version order at load,
 * each verified against its predecessor, then the newest replaces root.json atomically.
 */
export class FileTrustStore implements TrustStore {
  /**
   * The root last verified from exactly these bytes (sha256). Signature checks are a pure
   * function of the bytes, so an embedder that restarts agents in one process (the simulator,
   * the crash tests) verifies them once per trust store; expiry is checked at every load.
   */
  private verified: { sha256: string; root: RootMetadata } | null = null;

  constructor(readonly dir: string) {}

  private async readJson(name: string): Promise<unknown | null> {
    const bytes = await readBounded(join(this.dir, name), MAX_ROOT_BYTES);
    return bytes === null ? null : parseJson(bytes, { maxBytes: MAX_ROOT_BYTES });
  }

  private async loadInitial(now: Date): Promise<RootMetadata> {
    const bytes = await readBounded(join(this.dir, 'root.json'), MAX_ROOT_BYTES);
    const sha256 = createHash('sha256')
      .update(bytes ?? '')
      .digest('hex');
    if (bytes && this.verified?.sha256 === sha256) {
      checkNotExpired(this.verified.root.expires, now, 'root metadata');
      return structuredClone(this.verified.root);
    }
    const root = verifyInitialRoot(
      bytes === null ? null : parseJson(bytes, { maxBytes: MAX_ROOT_BYTES }),
      now,
    );
    this.verified = { sha256, root: structuredClone(root) };
    return root;
  }

  async load(now: Date): Promise<RootMetadata> {
    let root = await this.loadInitial(now);
    let rotated: unknown = null;
    for (;;) {
      const next = await this.readJson(`root.${root.version + 1}.json`);
      if (next === null) break;
      root = verifyRootRotation(root, next, now);
      rotated = next;
    }
    if (rotated) await atomicWriteFile(join(this.dir, 'root.json'), JSON.stringify(rotated));
    return root;
  }

  async rotate(envelope: unknown, now: Date): Promise<RootMetadata> {
    const trusted = await this.load(now);
    const next = verifyRootRotation(trusted, envelope, now);
    await atomicWriteFile(join(this.dir, 'root.json'), JSON.stringify(envelope));
    return next;
  }
}

export class MemoryTrustStore implements TrustStore {
  constructor(private envelope: unknown) {}
  async load(now: Date): Promise<RootMetadata> {
    return verifyInitialRoot(this.envelope, now);
  }
  async rotate(envelope: unknown, now: Date): Promise<RootMetadata> {
    const next = verifyRootRotation(await this.load(now), envelope, now);
    this.envelope = envelope;
    return next;
  }
}
