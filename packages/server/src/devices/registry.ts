import {
  DEVICE_AUTH_PREFIX,
  isFlotillaError,
  isValidDeviceId,
  verifyDevicePassword,
} from '@flotilla/protocol';
import { ServerError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Device, DeviceStatus } from '../store/repos/devices.js';
import { authNonceKey } from '../store/repos/nonces.js';
import type { Store } from '../store/store.js';
import { RegistrationLimiter } from './registration-limiter.js';

/** Issues and revokes static MQTT credentials where the broker cannot verify device signatures. */
export interface CredentialIssuer {
  issue(deviceId: string): Promise<{ username: string; password: string }>;
  revoke(deviceId: string): Promise<void>;
}

export interface RegisterRequest {
  deviceId: string;
  publicKey: string;
  /** A device password (`makeDevicePassword`) proving the caller holds the private key. */
  proof: string;
  hardware?: string;
  provisioningToken?: string;
}

/**
 * Device identity and lifecycle: pending → accepted | rejected, accepted → decommissioned.
 * Registration needs proof of the private key; a one-time provisioning token (or the
 * auto-accept policy) accepts at once, otherwise an operator decides.
 */
export class DeviceRegistry {
  credentials: CredentialIssuer | null = null;
  /** Called after a device stops being accepted (the embedded broker closes its connection). */
  onRevoked: ((deviceId: string) => void) | null = null;
  /** The broker could not be told of a revocation (it is retried by the broker reconcile). */
  onRevokeFailed: ((deviceId: string, err: unknown) => void) | null = null;
  /** Called with the public keys of devices just accepted in bulk (to parse them ahead of logins). */
  onKeysAccepted: ((publicKeys: string[]) => void) | null = null;

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly opts: {
      autoAccept: boolean;
      authWindowMs: number;
      maxPendingDevices: number;
      registerPerSourcePerMinute: number;
      registerTrackedSources: number;
    },
    private readonly clock: () => number = Date.now,
  ) {
    this.limiter = new RegistrationLimiter(opts.registerPerSourcePerMinute, opts.registerTrackedSources);
  }

  private readonly limiter: RegistrationLimiter;

  authInfo(id: string): Promise<{ publicKey: string; status: DeviceStatus } | undefined> {
    return this.store.devices.authInfo(id);
  }

  /**
   * A device registers its key with a proof of possession (a device password). `source` is the
   * caller's address: attempts that leave an unproven pending claim or fail are rate-limited per
   * source, and pending claims are bounded in number. The proof's nonce is recorded where MQTT
   * logins record theirs, so a captured proof is neither a second registration nor a login.
   */
  async register(
    req: RegisterRequest,
    source = 'unknown',
  ): Promise<{ device: Device; mqtt?: { username: string; password: string } }> {
    const now = this.clock();
    if (this.limiter.exhausted(source, now))
      throw new ServerError('FLOTILLA_ERR_SERVER_REGISTER_RATE_LIMITED', `from ${source}`);
    let device: Device;
    try {
      device = await this.registerNow(req, now);
    } catch (err) {
      this.limiter.charge(source, now);
      throw err;
    }
    if (device.status !== 'accepted') this.limiter.charge(source, now);
    if (device.status === 'accepted' && this.credentials)
      return { device, mqtt: await this.credentials.issue(device.id) };
    return { device };
  }

  private registerNow(req: RegisterRequest, now: number): Promise<Device> {
    if (!isValidDeviceId(req.deviceId))
      throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'invalid device id');
    if (!req.proof.startsWith(`${DEVICE_AUTH_PREFIX}.`))
      throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', 'proof must be a device password');
    let nonce: string;
    try {
      nonce = verifyDevicePassword(
        req.proof,
        req.deviceId,
        req.publicKey,
        new Date(now),
        this.opts.authWindowMs,
      ).nonce;
    } catch (err) {
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
        `proof of key possession failed: ${isFlotillaError(err) ? err.message : 'bad proof'}`,
      );
    }
    return this.store.tx(async (tx) => {
      // Kept as long as a login nonce (the password verifies ±window around its timestamp).
      const until = now + 2 * this.opts.authWindowMs;
      if (!(await tx.nonces.add(authNonceKey(req.deviceId, nonce), until, now)))
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_UNAUTHENTICATED',
          'proof of key possession was already used; sign a fresh one',
        );
      const r = await this.upsert(
        tx,
        req.deviceId,
        req.publicKey,
        req.hardware ?? null,
        req.provisioningToken,
        now,
      );
      if (!r.ok)
        throw new ServerError(
          r.code === 'token'
            ? 'FLOTILLA_ERR_SERVER_PROVISIONING_TOKEN'
            : r.code === 'full'
              ? 'FLOTILLA_ERR_SERVER_PENDING_FULL'
              : 'FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH',
          r.detail,
        );
      return (await tx.devices.get(req.deviceId))!;
    });
  }

  /**
   * Factory pre-registration by an admin: keys from a trusted manufacturing list, no per-device
   * proof (the admin token vouches for them). All or nothing in one transaction: a device id
   * already registered with another key (and not decommissioned) fails the whole batch. A device
   * already registered with the same key is left as it is. One audit entry names every id.
   */
  async bulkRegister(
    items: readonly { deviceId: string; publicKey: string; hardware?: string; tags?: string[] }[],
    status: 'accepted' | 'pending',
    actor: string,
  ): Promise<{ registered: string[]; unchanged: string[] }> {
    // Static MQTT secrets (external broker) are handed to each device when it registers itself.
    if (this.credentials)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_CONFLICT',
        'bulk registration issues no MQTT secrets: with an external broker devices register one by one',
      );
    const seen = new Set<string>();
    for (const it of items) {
      if (!isValidDeviceId(it.deviceId))
        throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', `invalid device id ${it.deviceId}`);
      if (seen.has(it.deviceId))
        throw new ServerError('FLOTILLA_ERR_SERVER_VALIDATION', `device ${it.deviceId} is listed twice`);
      seen.add(it.deviceId);
    }
    const now = this.clock();
    const out = await this.store.tx(async (tx) => {
      const registered: string[] = [];
      const unchanged: string[] = [];
      for (const it of items) {
        const existing = await tx.devices.get(it.deviceId);
        if (existing && existing.status !== 'decommissioned') {
          if (existing.publicKey !== it.publicKey)
            throw new ServerError(
              'FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH',
              `device ${it.deviceId} is registered with another key (nothing was registered)`,
            );
          unchanged.push(it.deviceId);
          continue;
        }
        if (existing) await tx.devices.replaceKey(it.deviceId, it.publicKey, status, now);
        else
          await tx.devices.insert({
            id: it.deviceId,
            publicKey: it.publicKey,
            status,
            hardware: it.hardware ?? null,
            tags: it.tags ?? [],
            now,
          });
        registered.push(it.deviceId);
      }
      await tx.audit.record(actor, 'device.bulk-register', null, { status, registered, unchanged }, now);
      return { registered, unchanged };
    });
    for (const deviceId of out.registered) this.bus.emit('device.registered', { deviceId, status });
    if (status === 'accepted') this.onKeysAccepted?.(items.map((it) => it.publicKey));
    return out;
  }

  /** The MQTT provisioning path: the token authorises the key in one step. */
  async registerWithToken(
    deviceId: string,
    publicKey: string,
    token: string,
    now: number,
  ): Promise<{ ok: true; status: DeviceStatus } | { ok: false; detail: string }> {
    try {
      return await this.store.tx(async (tx) => {
        const r = await this.upsert(tx, deviceId, publicKey, null, token, now);
        if (!r.ok) throw new Error(r.detail);
        return { ok: true as const, status: (await tx.devices.get(deviceId))!.status };
      });
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  }

  /**
   * Creates or updates the device record. First come keeps the id against another key, except
   * that a valid provisioning token replaces a `pending` claim: an unproven claim (anyone can
   * sign one for any id) must not lock out the real device the operator issued a token for.
   */
  private async upsert(
    tx: Store,
    id: string,
    publicKey: string,
    hardware: string | null,
    token: string | undefined,
    now: number,
  ): Promise<{ ok: true } | { ok: false; code: 'token' | 'key' | 'full'; detail: string }> {
    const existing = await tx.devices.get(id);
    if (existing && existing.publicKey === publicKey && existing.status !== 'decommissioned' && !token)
      return { ok: true };
    const live = existing && existing.status !== 'decommissioned';
    const claimed = live && existing.publicKey !== publicKey;
    if (claimed && (!token || existing.status !== 'pending'))
      return { ok: false, code: 'key', detail: `device ${id} is registered with another key` };
    let status: DeviceStatus = this.opts.autoAccept ? 'accepted' : 'pending';
    if (token) {
      const t = await tx.provisioning.consume(token, id, now);
      if (!t) return { ok: false, code: 'token', detail: 'provisioning token is unknown, expired or used' };
      status = t.autoAccept ? 'accepted' : 'pending';
    } else if (
      status === 'pending' &&
      (await tx.devices.countByStatus('pending')) >= this.opts.maxPendingDevices
    )
      return {
        ok: false,
        code: 'full',
        detail: `${this.opts.maxPendingDevices} devices already wait for acceptance`,
      };
    if (existing && existing.publicKey === publicKey && existing.status === 'accepted') return { ok: true };
    if (claimed) await tx.devices.replaceClaim(id, publicKey, status, hardware, now);
    else if (existing) await tx.devices.replaceKey(id, publicKey, status, now);
    else await tx.devices.insert({ id, publicKey, status, hardware, now });
    await tx.audit.record(
      `device:${id}`,
      'device.register',
      id,
      {
        status,
        via: token ? 'token' : 'key',
        // The unproven pending claim the token displaced (its key, for the investigation).
        ...(claimed ? { replacedPendingKey: existing.publicKey } : {}),
      },
      now,
    );
    this.bus.emit('device.registered', { deviceId: id, status });
    return { ok: true };
  }

  async setStatus(
    id: string,
    to: 'accepted' | 'rejected' | 'decommissioned',
    actor: string,
  ): Promise<Device> {
    const now = this.clock();
    const device = await this.store.tx(async (tx) => {
      const d = await tx.devices.get(id);
      if (!d) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `device ${id}`);
      const allowed: Record<typeof to, DeviceStatus[]> = {
        accepted: ['pending', 'rejected'],
        rejected: ['pending', 'accepted'],
        decommissioned: ['pending', 'accepted', 'rejected'],
      };
      if (d.status === to) return d;
      if (!allowed[to].includes(d.status))
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_DEVICE_STATE',
          `device ${id} is ${d.status}, cannot become ${to}`,
        );
      await tx.devices.setStatus(id, to, now);
      if (to !== 'accepted') await tx.devices.setMqttSecretHash(id, null, now);
      await tx.audit.record(
        actor,
        `device.${to === 'accepted' ? 'accept' : to === 'rejected' ? 'reject' : 'decommission'}`,
        id,
        { from: d.status },
        now,
      );
      return (await tx.devices.get(id))!;
    });
    // Committed first: a broker that cannot be reached now keeps the device's client until the
    // next reconcile deletes it (the store is the truth); the live session is closed regardless.
    if (to !== 'accepted' && this.credentials)
      await this.credentials.revoke(id).catch((err: unknown) => this.onRevokeFailed?.(id, err));
    if (to !== 'accepted') this.onRevoked?.(id);
    this.bus.emit('device.status', { deviceId: id, status: device.status });
    return device;
  }

  setPlacement(
    id: string,
    p: { tags?: string[]; group?: string | null; channel?: string },
    actor: string,
  ): Promise<Device> {
    const now = this.clock();
    return this.store.tx(async (tx) => {
      const d = await tx.devices.get(id);
      if (!d) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `device ${id}`);
      const next = {
        tags: p.tags ?? d.tags,
        group: p.group === undefined ? d.group : p.group,
        channel: p.channel ?? d.channel,
      };
      await tx.devices.setPlacement(id, next, now);
      await tx.audit.record(actor, 'device.placement', id, next, now);
      return (await tx.devices.get(id))!;
    });
  }
}
