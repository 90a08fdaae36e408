import { Worker } from 'node:worker_threads';
import { isFlotillaError, preloadVerifyKeys, verifyDevicePassword } from '@flotilla/protocol';
import type { Logger } from 'pino';
import { workerFile } from '../worker-file.js';

export interface PasswordCheck {
  password: string;
  deviceId: string;
  publicKey: string;
  now: number;
  windowMs: number;
}

export type PasswordVerdict = { ok: true; nonce: string; ts: number } | { ok: false; detail: string };

export type VerifierRequest =
  | { kind: 'check'; id: number; checks: PasswordCheck[] }
  | { kind: 'preload'; id: number; keys: string[] };

export type VerifierReply = { id: number; verdicts: PasswordVerdict[] } | { id: number; preloaded: number };

interface Pending {
  check: PasswordCheck;
  resolve: (v: PasswordVerdict) => void;
}

/** Signature and time window of a device password (protocol's rules), as a verdict. */
export function checkPassword(c: PasswordCheck): PasswordVerdict {
  try {
    const claims = verifyDevicePassword(c.password, c.deviceId, c.publicKey, new Date(c.now), c.windowMs);
    return { ok: true, nonce: claims.nonce, ts: claims.ts };
  } catch (err) {
    return { ok: false, detail: isFlotillaError(err) ? err.message : 'password does not verify' };
  }
}

/** Batches sent and not answered yet: enough to keep the worker busy while a reply travels back. */
const MAX_BATCHES_IN_FLIGHT = 2;

/**
 * Checks device passwords in a worker thread, so that a reconnect storm's signature checks run on
 * another core than the broker's event loop. Checks travel in batches, at most two in flight: what
 * arrives meanwhile waits for the next batch, so under a storm batches grow (one message, one
 * wake-up of each thread per batch, not per login) and a lone login is sent at once. If the
 * worker cannot start or dies, checks (also those in flight) run on the calling thread instead:
 * slower under a storm, never skipped.
 */
export class PasswordVerifier {
  private worker: Worker | null = null;
  private seq = 0;
  private readonly inFlight = new Map<number, Pending[]>();
  private readonly preloading = new Map<number, () => void>();
  private queued: Pending[] = [];
  private sendScheduled = false;

  constructor(
    private readonly log: Logger,
    inWorker = true,
  ) {
    if (!inWorker) return;
    try {
      const w = new Worker(workerFile(import.meta.url, './password-worker.js'));
      w.on('message', (m: VerifierReply) => {
        if ('preloaded' in m) {
          this.preloading.get(m.id)?.();
          this.preloading.delete(m.id);
          return;
        }
        const batch = this.inFlight.get(m.id) ?? [];
        this.inFlight.delete(m.id);
        for (const [i, p] of batch.entries()) p.resolve(m.verdicts[i]!);
        this.scheduleSend();
      });
      w.on('error', (err) => this.workerGone(`password worker failed: ${err.message}`));
      w.on('exit', (code) => this.workerGone(`password worker exited (code ${code})`));
      this.worker = w;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'password worker unavailable: checking on the event loop');
    }
  }

  check(c: PasswordCheck): Promise<PasswordVerdict> {
    if (!this.worker) return Promise.resolve(checkPassword(c));
    return new Promise((resolve) => {
      this.queued.push({ check: c, resolve });
      this.scheduleSend();
    });
  }

  /** The queue goes out after this loop turn's logins have joined it, if a batch may be in flight. */
  private scheduleSend(): void {
    if (this.sendScheduled || this.queued.length === 0 || this.inFlight.size >= MAX_BATCHES_IN_FLIGHT) return;
    this.sendScheduled = true;
    setImmediate(() => {
      this.sendScheduled = false;
      this.send();
    });
  }

  /**
   * Parses these keys ahead of the logins that will present them, in the thread that checks
   * (≈15 µs a key here). Resolves when done: a server starting up waits for it before it listens.
   */
  preload(keys: string[]): Promise<void> {
    if (!this.worker) {
      preloadVerifyKeys(keys);
      return Promise.resolve();
    }
    const id = ++this.seq;
    this.worker.postMessage({ kind: 'preload', id, keys } satisfies VerifierRequest);
    return new Promise((resolve) => this.preloading.set(id, resolve));
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.checkHere();
    await w?.terminate();
  }

  private send(): void {
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) return;
    if (!this.worker) {
      for (const p of batch) p.resolve(checkPassword(p.check));
      return;
    }
    const id = ++this.seq;
    this.inFlight.set(id, batch);
    this.worker.postMessage({
      kind: 'check',
      id,
      checks: batch.map((p) => p.check),
    } satisfies VerifierRequest);
  }

  private workerGone(why: string): void {
    if (!this.worker) return; // closed on purpose
    this.worker = null;
    this.log.error(`${why}: checking device passwords on the event loop from now on`);
    this.checkHere();
  }

  /**
   * Whatever the worker was asked and did not answer, and what waits for a batch, is checked here
   * (keys parse on demand).
   */
  private checkHere(): void {
    for (const done of this.preloading.values()) done();
    this.preloading.clear();
    for (const batch of this.inFlight.values()) for (const p of batch) p.resolve(checkPassword(p.check));
    this.inFlight.clear();
    this.send();
  }
}
