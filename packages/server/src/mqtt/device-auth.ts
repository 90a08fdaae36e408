import {
  DEVICE_AUTH_PREFIX,
  isValidDeviceId,
  PROVISIONING_AUTH_PREFIX,
  parseProvisioningPassword,
} from '@flotilla/protocol';
import type { DeviceRegistry } from '../devices/registry.js';
import type { ServerLimits } from '../limits.js';
import { authNonceKey } from '../store/repos/nonces.js';
import { LocalLoginOrder, type LoginOrder } from './login-order.js';
import { checkPassword, type PasswordVerifier } from './password-verifier.js';
import type { SharedNonces } from './redis-sharing.js';

export type AuthResult =
  /** `passwordTs`: a key login's password timestamp, which orders the device's sessions (login-order.ts). */
  | { ok: true; deviceId: string; via: 'key' | 'provisioning-token'; passwordTs?: number }
  | {
      ok: false;
      reason: 'bad-credentials' | 'not-authorized' | 'replay' | 'busy' | 'superseded';
      detail: string;
    };

/** Where accepted nonces survive a restart (the store's `auth_nonces` table). */
export interface NoncePersistence {
  /** Records the keys in one transaction; false for a key already recorded and still live. */
  addMany(entries: { key: string; until: number }[], now: number): Promise<boolean[]>;
  live(now: number, max: number): Promise<{ key: string; until: number }[]>;
  prune(now: number): Promise<number>;
}

const SHARED_DOWN =
  'FLOTILLA_ERR_SERVER_REDIS: the Redis shared by the nodes does not answer; logins resume when it is back';

/** Logins of this long share one commit (each waits at most this long for its CONNACK). */
const NONCE_COMMIT_DELAY_MS = 20;

export type NonceVerdict = 'ok' | 'replay' | 'full' | 'busy' | 'shared-down';

interface PendingNonce {
  key: string;
  until: number;
  now: number;
  resolve: (v: NonceVerdict) => void;
}

/**
 * Remembers nonces of accepted device passwords for as long as such a password can verify, so a
 * captured password cannot be replayed. Bounded: past `max` live entries new logins are refused
 * instead of memory growing. With `persist`, every accepted nonce is on disk before the login is
 * accepted and the live ones are loaded at start: a restart opens no replay window. The writes are
 * grouped (one transaction for all the logins of a few milliseconds): in a reconnect storm a
 * transaction per login would cost more than verifying the signature.
 *
 * (The alternative — refusing passwords stamped before the server started — needs no writes but
 * locks out every device whose clock runs behind the server's for up to the auth window after
 * each restart, exactly during the reconnect storm that follows it.)
 */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  private lastPrune = 0;
  private pending: PendingNonce[] = [];

  constructor(
    private readonly windowMs: number,
    private readonly max: number,
    private readonly persist: NoncePersistence | null = null,
    /** Several nodes: a nonce is claimed cluster-wide (Redis) before it is recorded here. */
    private readonly shared: SharedNonces | null = null,
  ) {}

  /** Takes in the live nonces the store holds (call once before the first login). */
  async load(now: number): Promise<void> {
    if (!this.persist) return;
    await this.persist.prune(now);
    for (const { key, until } of await this.persist.live(now, this.max)) this.seen.set(key, until);
    this.lastPrune = now;
  }

  /**
   * 'ok' once the nonce is recorded, 'replay' when it was seen, 'full' when the cache is full,
   * 'busy' when it could not be written, 'shared-down' when the nodes' shared Redis did not answer.
   */
  add(key: string, now: number): Promise<NonceVerdict> {
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return Promise.resolve('replay');
    // Expired entries go once a window has passed (and whenever the cache is full).
    if (this.seen.size >= this.max || now - this.lastPrune >= this.windowMs) this.prune(now);
    if (this.seen.size >= this.max) return Promise.resolve('full');
    // A password is valid ±window around its timestamp; keeping 2×window covers all of it.
    const keepUntil = now + 2 * this.windowMs;
    // Taken in memory at once: the same nonce again in this turn is a replay.
    this.seen.set(key, keepUntil);
    if (!this.shared) return this.record(key, keepUntil, now);
    // Another node may have accepted this password: the cluster-wide claim decides.
    return this.shared.claim(key, keepUntil - now).then(
      (fresh) => (fresh ? this.record(key, keepUntil, now) : 'replay'),
      () => {
        this.seen.delete(key);
        return 'shared-down';
      },
    );
  }

  /** Recorded in the store too: a replay stays refused after a restart, also of Redis. */
  private record(key: string, keepUntil: number, now: number): Promise<NonceVerdict> {
    if (!this.persist) return Promise.resolve('ok');
    return new Promise((resolve) => {
      // Gather a few milliseconds of logins into one commit: aedes hands them over one by one.
      if (this.pending.length === 0) setTimeout(() => void this.flush(), NONCE_COMMIT_DELAY_MS);
      this.pending.push({ key, until: keepUntil, now, resolve });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    let fresh: boolean[];
    try {
      fresh = await this.persist!.addMany(batch, batch[batch.length - 1]!.now);
    } catch {
      // Not recorded, so not accepted: the device retries with a new password.
      for (const p of batch) {
        this.seen.delete(p.key);
        p.resolve('busy');
      }
      return;
    }
    for (const [i, p] of batch.entries()) p.resolve(fresh[i] ? 'ok' : 'replay');
  }

  prune(now: number): void {
    this.lastPrune = now;
    for (const [k, until] of this.seen) if (until <= now) this.seen.delete(k);
    // Best effort: what a failed prune leaves is removed by the next one (the rows stay refusable).
    this.persist?.prune(now).catch(() => {});
  }

  get size(): number {
    return this.seen.size;
  }
}

/**
 * Device authentication for the embedded broker: the device's own ed25519 key (time-bound signed
 * password; the signature check, the hot path of a reconnect storm, runs where `verifier` says)
 * or a one-time provisioning token that registers the device's key. Only accepted devices get in.
 */
export class DeviceAuthenticator {
  readonly nonces: NonceCache;

  constructor(
    private readonly registry: DeviceRegistry,
    private readonly limits: ServerLimits,
    private readonly clock: () => number = Date.now,
    persist: NoncePersistence | null = null,
    /** Where signatures are checked (a worker thread in the server; here by default). */
    private readonly verifier: Pick<PasswordVerifier, 'check' | 'close'> = {
      check: async (c) => checkPassword(c),
      close: async () => {},
    },
    sharedNonces: SharedNonces | null = null,
    /** Several nodes: the order is shared (Redis); alone, kept here. */
    private readonly loginOrder: LoginOrder = new LocalLoginOrder(),
  ) {
    this.nonces = new NonceCache(limits.authWindowMs, limits.maxNonces, persist, sharedNonces);
  }

  /** Loads the persisted nonces (a restart must not open a replay window); before the first login. */
  load(): Promise<void> {
    return this.nonces.load(this.clock());
  }

  close(): Promise<void> {
    return this.verifier.close();
  }

  async isAccepted(deviceId: string): Promise<boolean> {
    return (await this.registry.authInfo(deviceId))?.status === 'accepted';
  }

  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<AuthResult> {
    if (!username || !isValidDeviceId(username) || !password || password.length > 1024)
      return { ok: false, reason: 'bad-credentials', detail: 'missing or malformed user name or password' };
    const pw = password.toString('utf8');
    const now = this.clock();
    if (pw.startsWith(`${PROVISIONING_AUTH_PREFIX}.`)) return this.withToken(username, pw, now);
    if (!pw.startsWith(`${DEVICE_AUTH_PREFIX}.`))
      return { ok: false, reason: 'bad-credentials', detail: 'unknown password scheme' };
    const device = await this.registry.authInfo(username);
    if (!device) return { ok: false, reason: 'not-authorized', detail: 'unknown device' };
    const verdict = await this.verifier.check({
      password: pw,
      deviceId: username,
      publicKey: device.publicKey,
      now,
      windowMs: this.limits.authWindowMs,
    });
    if (!verdict.ok) return { ok: false, reason: 'bad-credentials', detail: verdict.detail };
    if (device.status !== 'accepted')
      return { ok: false, reason: 'not-authorized', detail: `device is ${device.status}` };
    const seen = await this.nonces.add(authNonceKey(username, verdict.nonce), now);
    if (seen === 'replay') return { ok: false, reason: 'replay', detail: 'password already used' };
    if (seen === 'full') return { ok: false, reason: 'busy', detail: 'nonce cache full' };
    if (seen === 'busy') return { ok: false, reason: 'busy', detail: 'nonce could not be recorded' };
    if (seen === 'shared-down') return { ok: false, reason: 'busy', detail: SHARED_DOWN };
    // Until a password this old can no longer verify, no older one may take the session over.
    const newest = await this.loginOrder
      .claim(username, verdict.ts, 2 * this.limits.authWindowMs, now)
      .catch(() => null);
    if (newest === null) return { ok: false, reason: 'busy', detail: SHARED_DOWN };
    if (!newest)
      return {
        ok: false,
        reason: 'superseded',
        detail: 'a session of this device opened with a newer password is open (a stale login)',
      };
    return { ok: true, deviceId: username, via: 'key', passwordTs: verdict.ts };
  }

  /** A device session opened with `passwordTs` ended: an older password may log in again. */
  sessionEnded(deviceId: string, passwordTs: number): Promise<void> {
    return this.loginOrder.release(deviceId, passwordTs);
  }

  private async withToken(deviceId: string, pw: string, now: number): Promise<AuthResult> {
    const parsed = parseProvisioningPassword(pw);
    if (!parsed) return { ok: false, reason: 'bad-credentials', detail: 'malformed provisioning password' };
    const r = await this.registry.registerWithToken(deviceId, parsed.publicKeyHex, parsed.token, now);
    if (!r.ok) return { ok: false, reason: 'not-authorized', detail: r.detail };
    if (r.status !== 'accepted')
      return { ok: false, reason: 'not-authorized', detail: `device is ${r.status}` };
    return { ok: true, deviceId, via: 'provisioning-token' };
  }
}
