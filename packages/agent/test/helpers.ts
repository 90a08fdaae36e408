import { createHash, createPrivateKey, sign as nodeSign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeDelta } from '@flotilla/delta';
import {
  buildRoot,
  canonicalBytes,
  generateKeyPair,
  isoAfter,
  type KeyPair,
  type Offer,
  type ReleaseManifest,
  SCHEMA_VERSION,
  type SignedEnvelope,
  sha256Hex,
  signDocument,
} from '@flotilla/protocol';
import type { Aedes } from 'aedes';
import {
  type Agent,
  type AgentConfig,
  type AgentDeps,
  type AgentLimitsOverride,
  type Bootloader,
  type Clock,
  createAgent,
  type Fetcher,
  FunctionCheck,
  type HealthCheck,
  type HookRunner,
  type Transport,
  type UpdateLock,
} from '../src/index.js';
import { MemoryFetcher, MemoryHub, type PowerCut, SimDevice } from '../src/testing.js';

/** TEST-ONLY keys, made per run; nothing secret is committed. */
export interface TestKeys {
  root: KeyPair[];
  release: KeyPair;
  delta: KeyPair;
  recovery: KeyPair;
  rootEnvelope: SignedEnvelope<unknown>;
}

export function makeKeys(): TestKeys {
  const root = [generateKeyPair(), generateKeyPair()];
  const release = generateKeyPair();
  const delta = generateKeyPair();
  const recovery = generateKeyPair();
  const meta = buildRoot({
    version: 1,
    expires: isoAfter(new Date(), 365),
    roles: {
      root: { keys: root, threshold: 2 },
      release: { keys: [release], threshold: 1 },
      delta: { keys: [delta], threshold: 1 },
      recovery: { keys: [recovery], threshold: 1 },
    },
  });
  return { root, release, delta, recovery, rootEnvelope: signDocument(meta, root) };
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/**
 * The tests' stand-in for the server signs with node:crypto: ed25519 signatures are
 * deterministic, so the envelope is byte for byte what protocol's `signDocument` (tweetnacl)
 * makes, for a fraction of the CPU. The agent still verifies with protocol's trust module.
 */
export function signFast<T>(signed: T, keys: KeyPair[]): SignedEnvelope<T> {
  const message = canonicalBytes(signed);
  return {
    signed,
    signatures: keys.map((k) => ({
      keyid: k.keyId,
      sig: nodeSign(
        null,
        message,
        createPrivateKey({
          key: Buffer.concat([PKCS8_ED25519_PREFIX, k.secretKey.subarray(0, 32)]),
          format: 'der',
          type: 'pkcs8',
        }),
      ).toString('hex'),
    })),
  };
}

/** Seeded PRNG (mulberry32): reproducible "random" tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeImage(seed: number, size: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(Math.floor(r() * 2 ** 32), i);
  return b;
}

/** A variant of `base` with a few regions changed (what a real next release looks like to a delta). */
export function mutateImage(base: Buffer, seed: number): Buffer {
  const out = Buffer.from(base);
  const r = prng(seed);
  for (let i = 0; i < 4; i++) {
    const at = Math.floor(r() * (out.length - 512));
    makeImage(seed + i, 512).copy(out, at);
  }
  return out;
}

/** A real delta (the codec the server uses) from `from` to `to`, in memory. */
export async function makeDelta(from: Buffer, to: Buffer): Promise<Buffer> {
  const parts: Buffer[] = [];
  await encodeDelta(from, to, async (chunk) => {
    parts.push(Buffer.from(chunk));
  });
  return Buffer.concat(parts);
}

export const HARDWARE = 'sim-board-v1';

export function manifestFor(
  image: Buffer,
  o: {
    version: string;
    securityVersion?: number;
    chunkSize?: number;
    compatible?: string[];
    kind?: 'release' | 'recovery';
    expiresDays?: number;
  },
): ReleaseManifest {
  const chunkSize = o.chunkSize ?? 4096;
  const chunkHashes: string[] = [];
  for (let i = 0; i < image.length; i += chunkSize)
    chunkHashes.push(sha256Hex(image.subarray(i, i + chunkSize)));
  return {
    _type: 'release',
    schemaVersion: SCHEMA_VERSION,
    kind: o.kind ?? 'release',
    name: 'demo-os',
    version: o.version,
    securityVersion: o.securityVersion ?? 1,
    compatible: o.compatible ?? [HARDWARE],
    image: { format: 'raw', sha256: sha256Hex(image), size: image.length, chunkSize, chunkHashes },
    sbom: { format: 'CycloneDX-1.5', sha256: sha256Hex('sbom'), size: 4 },
    provenance: {
      sourceRevision: 'test',
      builder: 'agent-tests',
      buildTime: '2026-01-01T00:00:00Z',
      inputs: [],
    },
    created: '2026-01-01T00:00:00Z',
    expires: isoAfter(new Date(), o.expiresDays ?? 30),
  };
}

export function signedRelease(
  keys: TestKeys,
  image: Buffer,
  o: Parameters<typeof manifestFor>[1],
  signer?: KeyPair,
) {
  return signFast(manifestFor(image, o), [signer ?? (o.kind === 'recovery' ? keys.recovery : keys.release)]);
}

export function makeOffer(
  keys: TestKeys,
  o: {
    deviceId: string;
    deploymentId: string;
    attempt?: number;
    release: SignedEnvelope<ReleaseManifest>;
    fullUrl: string;
    delta?: { url: string; bytes: Buffer; from: Buffer; fromVersion: string };
    expiresMinutes?: number;
    signer?: KeyPair;
  },
): SignedEnvelope<Offer> {
  const now = new Date();
  const m = o.release.signed;
  const offer: Offer = {
    _type: 'offer',
    schemaVersion: SCHEMA_VERSION,
    deploymentId: o.deploymentId,
    ...(o.attempt !== undefined ? { attempt: o.attempt } : {}),
    deviceId: o.deviceId,
    issued: isoAfter(new Date(now.getTime() - 60_000), 0),
    expires: new Date(now.getTime() + (o.expiresMinutes ?? 60) * 60_000)
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z'),
    release: o.release,
    full: { url: o.fullUrl, size: m.image.size, sha256: m.image.sha256 },
  };
  if (o.delta) {
    offer.delta = {
      url: o.delta.url,
      descriptor: signFast(
        {
          _type: 'delta' as const,
          schemaVersion: SCHEMA_VERSION,
          codec: 'flotilla-bsdiff-brotli',
          fromImageSha256: sha256Hex(o.delta.from),
          toImageSha256: m.image.sha256,
          deltaSha256: sha256Hex(o.delta.bytes),
          deltaSize: o.delta.bytes.length,
          fromVersion: o.delta.fromVersion,
          toVersion: m.version,
          expires: isoAfter(now, 7),
        },
        [keys.delta],
      ),
    };
  }
  return signFast(offer, [o.signer ?? keys.delta]);
}

let commandCounter = 0;
export function offerCommand(offer: unknown) {
  return { schemaVersion: SCHEMA_VERSION, type: 'offer', commandId: `cmd-${++commandCounter}`, offer };
}

export const FAST_LIMITS: AgentLimitsOverride = {
  download: {
    maxRetries: 3,
    maxAttempts: 10,
    backoffBaseMs: 1,
    backoffMaxMs: 5,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    minBytesPerSecond: 1,
    rateWindowMs: 60_000,
    progressEveryMs: 0,
  },
  health: { deadlineMs: 200, retryIntervalMs: 20, checkTimeoutMs: 200 },
  hooks: { retryIntervalMs: 1, maxRetries: 2 },
  updateLock: { pollMs: 5, maxWaitMs: 2000 },
};

export function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * A simulated device with its whole life: power-on (bootloader), agent start, run until the
 * machine rests, reboot when the agent asks, power cuts when the plan says. Records the chain of
 * states across lives: `X` = transition into X, `⚡` = power cut, `⏻` = reboot the agent asked
 * for, `↻X` = an agent started in state X (recovery).
 */
export class Rig {
  readonly hub = new MemoryHub();
  readonly fetcher: MemoryFetcher;
  readonly chain: string[] = [];
  agent: Agent | null = null;
  /** When false, the "new slot never runs the agent" (it does not boot far enough). */
  agentStartsOn: { A: boolean; B: boolean } = { A: true, B: true };
  healthy: (slot: 'A' | 'B') => boolean | string = () => true;
  hooks?: HookRunner;
  updateLock?: UpdateLock;
  extraHealth: HealthCheck[] = [];
  /** Another bootloader backend and its power-on emulation (the contract tests' U-Boot / GRUB). */
  backend?: { bootloader: Bootloader; boot(): Promise<'A' | 'B'> };
  /** Replaces the in-memory hub link (the MQTT tests use a real broker). */
  transportFactory?: () => Transport;
  /** The I/O the running agent was given (its transport, outbox…). */
  deps: AgentDeps | null = null;
  private rebootAsked = false;
  private pendingCut: PowerCut | undefined;

  private constructor(
    readonly dev: SimDevice,
    readonly keys: TestKeys,
    readonly factory: Buffer,
    readonly config: AgentConfig,
    fetcher?: Fetcher,
  ) {
    this.fetcher = (fetcher as MemoryFetcher) ?? new MemoryFetcher();
  }

  static async create(
    o: {
      keys?: TestKeys;
      imageSize?: number;
      slotSize?: number;
      chunkSize?: number;
      seed?: number;
      config?: Partial<AgentConfig>;
      fetcher?: Fetcher;
      bootlimit?: number;
      /** Where the device's files go (a tmpfs makes the fsyncs of long campaigns free). */
      parent?: string | undefined;
    } = {},
  ): Promise<Rig> {
    const keys = o.keys ?? makeKeys();
    const dir = await mkdtemp(join(o.parent ?? tmpdir(), 'flotilla-agent-'));
    const factory = makeImage(o.seed ?? 1, o.imageSize ?? 64 * 1024);
    const release = signedRelease(keys, factory, {
      version: '1.0.0',
      securityVersion: 1,
      chunkSize: o.chunkSize ?? 4096,
    });
    const dev = await SimDevice.create({
      dir,
      deviceId: 'dev-1',
      hardware: HARDWARE,
      slotSize: o.slotSize ?? 256 * 1024,
      factoryImage: factory,
      factoryRelease: release,
      root: keys.rootEnvelope,
      ...(o.bootlimit ? { bootlimit: o.bootlimit } : {}),
    });
    const config = dev.config({ limits: FAST_LIMITS, driftCheck: false, ...o.config });
    return new Rig(dev, keys, factory, config, o.fetcher);
  }

  /** Boots (bootloader decision) and starts an agent, unless the booted slot "does not boot". */
  async powerOn(opts: { cut?: PowerCut; skipBootloader?: boolean } = {}): Promise<Agent | null> {
    if (opts.cut) this.pendingCut = opts.cut;
    // A fault plan stays armed across lives until its power cut has happened.
    const cut = this.pendingCut && !this.pendingCut.dead ? this.pendingCut : undefined;
    const bl = this.backend?.bootloader ?? this.dev.bootloader;
    const slot = opts.skipBootloader
      ? await bl.bootedSlot()
      : this.backend
        ? await this.backend.boot()
        : await this.dev.powerOn();
    if (!this.agentStartsOn[slot]) return null;
    this.rebootAsked = false;
    const health: HealthCheck[] = [
      new FunctionCheck('sim-behaviour', async () => {
        const h = this.healthy(slot);
        return h === true ? { ok: true } : { ok: false, reason: typeof h === 'string' ? h : 'unhealthy' };
      }),
      ...this.extraHealth,
    ];
    const deps = this.dev.deps({
      transport: this.transportFactory ? this.transportFactory() : this.hub.transport(this.dev.deviceId),
      fetcher: this.fetcher,
      reboot: {
        reboot: async () => {
          this.rebootAsked = true;
        },
      },
      health,
      ...(this.hooks ? { hooks: this.hooks } : {}),
      ...(this.updateLock ? { updateLock: this.updateLock } : {}),
      ...(cut ? { powerCut: cut } : {}),
      ...(this.backend ? { bootloader: this.backend.bootloader } : {}),
      onTransition: (t) => this.chain.push(t.to),
    });
    this.deps = deps;
    const agent = createAgent(this.config, deps);
    this.agent = agent;
    const at = this.chain.length;
    await agent.start();
    if (agent.resumedFrom) this.chain.splice(at, 0, `↻${agent.resumedFrom}`);
    return agent;
  }

  /**
   * Runs lives until the agent rests in Idle: after a requested reboot or a power cut the device
   * powers on again (with no fault plan). Bounded by `maxLives`.
   */
  async runToRest(maxLives = 12): Promise<void> {
    for (let life = 0; life < maxLives; life++) {
      const a = this.agent;
      if (!a) {
        await this.powerOn();
        continue;
      }
      await a.settled();
      if (a.isDead) {
        this.chain.push('⚡');
        await a.stop();
        this.agent = null;
        continue;
      }
      if (a.isHalted && this.rebootAsked) {
        this.chain.push('⏻');
        await a.stop();
        this.agent = null;
        continue;
      }
      if (a.record.state === 'Idle') return;
      throw new Error(`agent rests in ${a.record.state}`);
    }
    throw new Error(`no rest after ${maxLives} lives: ${this.chain.join(' ')}`);
  }

  /** Publishes an image (and optional delta) on the memory fetcher, returns the offer command. */
  offer(
    image: Buffer,
    o: {
      version: string;
      securityVersion?: number;
      deploymentId?: string;
      attempt?: number;
      delta?: { bytes: Buffer; from: Buffer; fromVersion: string };
      chunkSize?: number;
      compatible?: string[];
      releaseSigner?: KeyPair;
      offerSigner?: KeyPair;
      expiresMinutes?: number;
      baseUrl?: string;
    },
  ) {
    const release = signedRelease(
      this.keys,
      image,
      {
        version: o.version,
        securityVersion: o.securityVersion ?? 2,
        chunkSize: o.chunkSize ?? 4096,
        ...(o.compatible ? { compatible: o.compatible } : {}),
      },
      o.releaseSigner,
    );
    const base = o.baseUrl ?? 'mem://artifacts';
    const fullUrl = `${base}/${sha(image)}`;
    if (this.fetcher instanceof MemoryFetcher) this.fetcher.put(fullUrl, image);
    let delta: Parameters<typeof makeOffer>[1]['delta'];
    if (o.delta) {
      const url = `${base}/${sha(o.delta.bytes)}`;
      if (this.fetcher instanceof MemoryFetcher) this.fetcher.put(url, o.delta.bytes);
      delta = { url, ...o.delta };
    }
    return offerCommand(
      makeOffer(this.keys, {
        deviceId: this.dev.deviceId,
        deploymentId: o.deploymentId ?? `dep-${o.version}`,
        ...(o.attempt !== undefined ? { attempt: o.attempt } : {}),
        release,
        fullUrl,
        ...(delta ? { delta } : {}),
        ...(o.offerSigner ? { signer: o.offerSigner } : {}),
        ...(o.expiresMinutes !== undefined ? { expiresMinutes: o.expiresMinutes } : {}),
      }),
    );
  }

  send(command: unknown): void {
    this.hub.sendCommand(this.dev.deviceId, command);
  }

  /** Durable events as the server recorded them (one per eventId), as "kind" or "kind:CODE". */
  told(): string[] {
    return this.hub
      .events(this.dev.deviceId)
      .filter(
        (e) => !['log', 'download-progress', 'install-progress', 'hook-output'].includes(e.kind as string),
      )
      .map((e) => {
        const r = e.reason as { code: string } | undefined;
        return r && e.kind !== 'offer-accepted' ? `${e.kind}:${r.code}` : (e.kind as string);
      });
  }

  async slotBytes(slot: 'A' | 'B', length: number): Promise<Buffer> {
    return (await readFile(this.dev.slotPath(slot))).subarray(0, length);
  }

  async cleanup(): Promise<void> {
    await this.agent?.stop();
    await rm(this.dev.dir, { recursive: true, force: true });
  }
}

/**
 * A clock that moves only when the test says so: `advance(ms)` wakes every sleep that falls due,
 * in order, and lets the woken code run before moving on. Wall time starts at the real time (trust
 * roots and offers are checked against it).
 */
export class ManualClock implements Clock {
  private elapsed = 0;
  private readonly start = Date.now();
  private seq = 0;
  private readonly timers = new Map<number, { at: number; wake: () => void }>();

  now(): Date {
    return new Date(this.start + this.elapsed);
  }

  monotonicMs(): number {
    return this.elapsed;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const id = ++this.seq;
      const onAbort = () => {
        this.timers.delete(id);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.timers.set(id, {
        at: this.elapsed + Math.max(0, ms),
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      });
    });
  }

  /** Sleeps not yet woken or aborted. */
  get pending(): number {
    return this.timers.size;
  }

  async advance(ms: number): Promise<void> {
    const end = this.elapsed + ms;
    for (;;) {
      let next: [number, { at: number; wake: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.elapsed = next[1].at;
      next[1].wake();
      await settleIo();
    }
    this.elapsed = end;
    await settleIo();
  }
}

/** Lets queued promise callbacks and immediate I/O completions run. */
export async function settleIo(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}

/** A live aedes client, as far as the broker tests use it (aedes' typings do not expose `clients`). */
interface AedesClientHandle {
  id: string;
  close(): void;
}

/** Closes every client connected to an aedes broker (a "kick": devices reconnect on their own). */
export function dropBrokerClients(broker: Aedes): void {
  const clients = (broker as unknown as { clients: Record<string, AedesClientHandle> }).clients;
  for (const c of Object.values(clients)) c.close();
}

/**
 * Drops a server's open sockets where the server type can (`http.Server.closeAllConnections`);
 * a plain `net.Server` has no such method, its sockets are closed by their owners.
 */
export function closeAllConnections(server: Server): void {
  (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
}

/** Stops a test broker: its listening socket, every client, then aedes itself. */
export async function closeBroker(broker: Aedes, server: Server): Promise<void> {
  closeAllConnections(server);
  dropBrokerClients(broker);
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => broker.close(() => r()));
}

/** Publishes a command to a device's commands topic as the server does (QoS 1, not retained). */
export function publishCommand(broker: Aedes, deviceId: string, cmd: unknown): Promise<void> {
  return new Promise((resolve, reject) =>
    broker.publish(
      {
        cmd: 'publish',
        topic: `flotilla/v1/devices/${deviceId}/commands`,
        payload: Buffer.from(JSON.stringify(cmd)),
        qos: 1,
        retain: false,
        dup: false,
      },
      (err) => (err ? reject(err) : resolve()),
    ),
  );
}

/** XORs one byte in place (tampering); an index outside the buffer throws instead of doing nothing. */
export function flipBits(buf: Buffer, index: number, mask: number): void {
  buf.writeUInt8(buf.readUInt8(index) ^ mask, index);
}
