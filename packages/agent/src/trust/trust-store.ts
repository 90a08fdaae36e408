import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  checkNotExpired,
  parseJson,
  type RootMetadata,
  verifyRootRotation,
  verifyRootStep,
  verifyTrustedRoot,
} from '@flotilla/protocol';
import { atomicWriteFile, readBounded } from '../fs-util.js';
import { AGENT_LIMITS } from '../limits.js';
import type { RootSource } from './root-source.js';

const MAX_ROOT_BYTES = AGENT_LIMITS.trust.maxRootBytes;

/**
 * The device's trust root: shipped in the image, rotated only by a root signed by old *and* new
 * keys. The rules are TUF's: the trusted root and every intermediate root are checked for
 * signatures and version only; expiry is checked on the final root alone, so a device that was
 * offline past its root's expiry can still rotate to the newer root the server publishes.
 */
export interface TrustStore {
  /** The trusted root (signatures checked, dropped-in newer roots applied), expired or not. */
  loadTrusted(): Promise<RootMetadata>;
  /**
   * TUF root update: the trusted root, then root N+1, N+2… from `source` until it has none
   * (each verified against its predecessor and kept atomically before the next), then the final
   * root must be unexpired (else FLOTILLA_ERR_EXPIRED). Without a source: local roots only.
   */
  update(now: Date, source?: RootSource | null, signal?: AbortSignal): Promise<RootMetadata>;
  /** `update(now)` without a source: the current root, unexpired. */
  load(now: Date): Promise<RootMetadata>;
  /** Verifies one new root against the trusted one and keeps it; returns the new root. */
  rotate(envelope: unknown, now: Date): Promise<RootMetadata>;
}

/** Applies roots from `source` to `trusted` (bounded); `keep` stores each one before the next. */
async function fetchChain(
  trusted: RootMetadata,
  source: RootSource,
  keep: (envelope: unknown, root: RootMetadata) => Promise<void>,
  signal?: AbortSignal,
): Promise<RootMetadata> {
  let root = trusted;
  for (let i = 0; i < AGENT_LIMITS.trust.maxRootsPerUpdate; i++) {
    const next = await source.fetch(root.version + 1, signal);
    if (next === null) break;
    root = verifyRootStep(root, next);
    await keep(next, root);
  }
  return root;
}

/**
 * `<dir>/root.json` is the trusted root. Newer roots dropped in as `<dir>/root.<version>.json`
 * (by an image update) or fetched from the server are applied in version order, each verified
 * against its predecessor; root.json is replaced atomically after each step.
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

  private async loadStored(): Promise<RootMetadata> {
    const bytes = await readBounded(join(this.dir, 'root.json'), MAX_ROOT_BYTES);
    const sha256 = createHash('sha256')
      .update(bytes ?? '')
      .digest('hex');
    if (bytes && this.verified?.sha256 === sha256) return structuredClone(this.verified.root);
    const root = verifyTrustedRoot(bytes === null ? null : parseJson(bytes, { maxBytes: MAX_ROOT_BYTES }));
    this.verified = { sha256, root: structuredClone(root) };
    return root;
  }

  /** root.json := this verified root, atomically (the cache follows the bytes written). */
  private async keep(envelope: unknown, root: RootMetadata): Promise<void> {
    const text = JSON.stringify(envelope);
    await atomicWriteFile(join(this.dir, 'root.json'), text);
    this.verified = { sha256: createHash('sha256').update(text).digest('hex'), root: structuredClone(root) };
  }

  async loadTrusted(): Promise<RootMetadata> {
    const stored = await this.loadStored();
    return fetchChain(stored, { fetch: async (v) => this.readJson(`root.${v}.json`) }, (env, root) =>
      this.keep(env, root),
    );
  }

  async update(now: Date, source?: RootSource | null, signal?: AbortSignal): Promise<RootMetadata> {
    let root = await this.loadTrusted();
    if (source) root = await fetchChain(root, source, (env, r) => this.keep(env, r), signal);
    checkNotExpired(root.expires, now, 'root metadata');
    return root;
  }

  load(now: Date): Promise<RootMetadata> {
    return this.update(now);
  }

  async rotate(envelope: unknown, now: Date): Promise<RootMetadata> {
    const next = verifyRootRotation(await this.loadTrusted(), envelope, now);
    await this.keep(envelope, next);
    return next;
  }
}
