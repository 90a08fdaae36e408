import { createHash } from 'node:crypto';
import { mkdir, readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import {
  checkInstallable,
  type DeviceCommand,
  decodeDeviceMessage,
  isFlotillaError,
  parseJson,
  type ReleaseManifest,
  type RootMetadata,
  type Slot,
  verifyOffer,
  verifyRelease,
} from '@flotilla/protocol';
import type { BootState } from '../bootloader/types.js';
import { AgentError, type ErrorReport, isKilled, toErrorReport } from '../errors.js';
import { atomicWriteFile } from '../fs-util.js';
import { HOOK_EXIT, type HookPoint } from '../hooks/hooks.js';
import { noUpdateLock } from '../hooks/update-lock.js';
import { type AgentLimits, resolveLimits, STATE_REPORT } from '../limits.js';
import { type Logger, silentLogger } from '../logger.js';
import { type EventFields, Reporter } from '../report/reporter.js';
import { hashSlot } from '../slots/hash-slot.js';
import { type AgentState, nextState, type StepEvent } from '../state/machine.js';
import {
  type AgentRecord,
  type Deployment,
  initialRecord,
  otherSlot,
  type SlotContent,
} from '../state/record.js';
import { FileSecurityFloor, type SecurityFloorStore } from '../state/security-floor.js';
import { FileStateStore } from '../state/store.js';
import { HttpRootSource, type RootSource } from '../trust/root-source.js';
import type { AgentConfig, AgentDeps } from './deps.js';
import { STEPS, type StepOutcome } from './steps.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentStatus {
  deviceId: string;
  state: AgentState;
  bootedSlot: Slot;
  committedSlot: Slot;
  slots: AgentRecord['slots'];
  securityVersion: number;
  bootloader: (BootState & { kind: string }) | { kind: string; error: string };
  deployment: Pick<
    Deployment,
    'id' | 'version' | 'targetSlot' | 'method' | 'origin' | 'verifiedChunks'
  > | null;
  lastError: ErrorReport | null;
  lastDeployment: AgentRecord['lastDeployment'];
  halted: boolean;
}

export function createAgent(config: AgentConfig, deps: AgentDeps): Agent {
  return new Agent(config, deps);
}

/**
 * One device agent. Embeddable: no process-global state, every I/O through `deps`, `stop()`
 * releases everything. `start()` loads the trust root and the persisted state, resumes or rolls
 * back whatever a power cut interrupted (the state's work simply runs again: every step is
 * idempotent), then waits for offers.
 */
export class Agent {
  readonly limits: AgentLimits;
  readonly log: Logger;
  readonly reporter: Reporter;
  /** The anti-rollback floor's own durable copy (the state record and the bootloader hold others). */
  readonly floor: SecurityFloorStore;
  rec!: AgentRecord;
  root!: RootMetadata;
  booted!: Slot;
  /** The state a power cut or reboot interrupted, when this start resumed one. */
  resumedFrom: AgentState | null = null;
  private running: Promise<void> | null = null;
  private commands: Promise<void> = Promise.resolve();
  private deploymentAbort = new AbortController();
  private readonly lifetime = new AbortController();
  private stopped = false;
  private dead = false;
  private halted = false;
  private driftTimer: NodeJS.Timeout | undefined;
  /** Ends the heartbeat's wait at stop, halt or death (its sleep must not outlive the agent). */
  private readonly heartbeatAbort = new AbortController();
  readonly stateIntervalMs: number;
  private onlineWaiters = new Set<() => void>();

  constructor(
    readonly config: AgentConfig,
    readonly deps: AgentDeps,
  ) {
    this.limits = resolveLimits(config.limits);
    const iv = config.stateIntervalMs ?? STATE_REPORT.defaultIntervalMs;
    if (!Number.isInteger(iv) || iv < STATE_REPORT.minIntervalMs || iv > STATE_REPORT.maxIntervalMs)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_CONFIG',
        `stateIntervalMs ${iv} is outside ${STATE_REPORT.minIntervalMs}..${STATE_REPORT.maxIntervalMs}`,
      );
    this.stateIntervalMs = iv;
    this.log = (deps.logger ?? silentLogger).child({ device: config.deviceId });
    this.reporter = new Reporter(deps.transport, deps.outbox, deps.clock, this.log);
    this.floor = deps.securityFloor ?? new FileSecurityFloor(join(config.dataDir, 'security-floor.json'));
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async start(): Promise<void> {
    try {
      await mkdir(this.config.dataDir, { recursive: true });
      // Expired or not: a device offline past its root's expiry must still start, connect and
      // fetch the newer root; expiry is enforced before an offer or a local install is trusted.
      this.root = await this.deps.trust.loadTrusted();
      this.booted = await this.deps.bootloader.bootedSlot();
      let recoveredFrom: AgentState | null = null;
      let corrupt: ErrorReport | null = null;
      let rec: AgentRecord | null = null;
      try {
        rec = await this.deps.store.load();
      } catch (err) {
        if (isKilled(err)) throw err;
        corrupt = toErrorReport(err);
        if (this.deps.store instanceof FileStateStore) await this.deps.store.quarantine(String(Date.now()));
      }
      if (!rec) {
        rec = await this.firstRecord();
        this.rec = rec;
        await this.persist();
      } else {
        this.rec = rec;
        if (rec.state !== 'Idle') {
          // Persist, then act: the re-run counts against the loop breaker before it starts.
          recoveredFrom = rec.state;
          this.resumedFrom = rec.state;
          rec.runs[rec.state] = (rec.runs[rec.state] ?? 0) + 1;
          await this.persist();
        }
      }
      const floorReport = await this.reconcileFloor();
      this.deps.transport.start({
        onCommand: (p) => this.onCommand(p),
        onConnect: () => this.onConnect(),
        onDisconnect: () => undefined,
      });
      this.publishState();
      await this.publishInventory();
      void this.heartbeat();
      if (corrupt) await this.event('log', { deploymentId: null, reason: corrupt }, true);
      if (floorReport) await this.event('log', { deploymentId: null, ...floorReport }, true);
      if (recoveredFrom) {
        this.log.warn({ state: recoveredFrom }, 'resuming after a restart');
        await this.event(
          'log',
          {
            deploymentId: this.rec.deployment?.id ?? null,
            detail: { recoveredFrom, bootedSlot: this.booted },
          },
          false,
        );
        this.kick();
      } else if (this.config.driftCheck !== false) {
        this.scheduleDrift(0);
      }
    } catch (err) {
      if (isKilled(err)) return this.die();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.driftTimer);
    this.heartbeatAbort.abort();
    this.lifetime.abort(new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', 'agent stopping'));
    this.deploymentAbort.abort(new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', 'agent stopping'));
    for (const w of this.onlineWaiters) w();
    await this.running?.catch(() => undefined);
    await this.commands.catch(() => undefined);
    await this.deps.transport.stop();
  }

  /** Resolves when the machine rests: Idle, halted for a reboot, stopped or killed. */
  async settled(): Promise<void> {
    for (;;) {
      await this.commands;
      const r = this.running;
      if (!r) return;
      await r;
    }
  }

  get isHalted(): boolean {
    return this.halted;
  }
  get isDead(): boolean {
    return this.dead;
  }

  /** Fault injection hit: stop dead, as a power cut would — no state write, no report. */
  private die(): void {
    this.dead = true;
    this.stopped = true;
    clearTimeout(this.driftTimer);
    this.heartbeatAbort.abort();
    this.lifetime.abort(new Error('killed'));
    this.deploymentAbort.abort(new Error('killed'));
    void this.deps.transport.stop();
  }

  private async firstRecord(): Promise<AgentRecord> {
    let content: SlotContent | null = null;
    let sv = 0;
    if (this.config.factoryReleaseFile) {
      const env = parseJson(await readFile(this.config.factoryReleaseFile));
      const m = verifyRelease(env, this.root, this.deps.clock.now(), { allowKinds: ['release', 'recovery'] });
      content = {
        version: m.version,
        imageSha256: m.image.sha256,
        releaseFile: await this.storeRelease(env, m),
      };
      sv = m.securityVersion;
    }
    return initialRecord(this.booted, content, sv);
  }

  /**
   * The floor is the maximum of the state record, its own file and the bootloader's copy: losing
   * or corrupting any one of them (a power cut, a bad sector, a wiped data partition) never lowers
   * it. Lagging copies are raised again; a record that was behind is saved with the maximum.
   */
  private async reconcileFloor(): Promise<Pick<EventFields, 'reason' | 'detail'> | null> {
    let unreadable: ErrorReport | null = null;
    const fromFile = await this.floor.load().catch((err) => {
      if (isKilled(err)) throw err;
      unreadable = toErrorReport(err);
      return null;
    });
    const fromBoot = await this.deps.bootloader.read().then(
      (s) => s.securityFloor ?? null,
      (err) => {
        if (isKilled(err)) throw err;
        return null;
      },
    );
    const fromState = this.rec.securityVersion;
    const floor = Math.max(fromState, fromFile ?? 0, fromBoot ?? 0);
    if (floor > fromState) {
      this.rec.securityVersion = floor;
      await this.deps.store.save(this.rec);
    }
    if (fromFile === null || fromFile < floor) await this.floor.raise(floor);
    if (!unreadable && floor === fromState) return null;
    return {
      ...(unreadable ? { reason: unreadable } : {}),
      detail: { securityFloor: floor, fromState, fromFile, fromBootloader: fromBoot },
    };
  }

  // ---- the runner -----------------------------------------------------------------------------

  kick(): void {
    if (this.running || this.stopped) return;
    this.running = this.runLoop().finally(() => {
      this.running = null;
    });
  }

  private async runLoop(): Promise<void> {
    try {
      while (!this.stopped && this.rec.state !== 'Idle') {
        const state = this.rec.state;
        let outcome: StepOutcome;
        if ((this.rec.runs[state] ?? 0) > this.limits.maxStateRuns) {
          outcome = {
            event: 'loop',
            error: toErrorReport(
              new AgentError(
                'FLOTILLA_ERR_AGENT_STATE_LOOP',
                `${state} started ${this.rec.runs[state]} times`,
              ),
            ),
          };
        } else {
          try {
            outcome = await STEPS[state](this);
          } catch (err) {
            if (isKilled(err) || this.stopped) throw err;
            this.log.warn({ state, err: (err as Error).message }, 'step failed');
            outcome = { event: 'error', error: toErrorReport(err) };
          }
        }
        if ('halt' in outcome) {
          this.halted = true;
          this.stopped = true;
          this.heartbeatAbort.abort();
          return;
        }
        await this.transition(outcome.event, outcome.error, outcome.patch);
      }
    } catch (err) {
      if (isKilled(err)) return this.die();
      if (this.stopped) return;
      throw err;
    }
  }

  /** The only place the state changes: table lookup, patch, persist, then tell observers. */
  async transition(event: StepEvent, error?: ErrorReport, patch?: (r: AgentRecord) => void): Promise<void> {
    const from = this.rec.state;
    // The widest window of a crash: the work of `from` is done, its successor not yet persisted.
    this.deps.faults?.(`finished:${from}`);
    const to = nextState(from, event);
    patch?.(this.rec);
    if (error) this.rec.lastError = error;
    this.rec.state = to;
    this.rec.runs[to] = (this.rec.runs[to] ?? 0) + 1;
    if (to === 'Idle') {
      const d = this.rec.deployment;
      if (d) this.rec.lastDeployment = { id: d.id, attempt: d.attempt, outcome: from };
      this.rec.deployment = null;
      this.rec.runs = {};
    }
    await this.deps.store.save(this.rec);
    this.deps.onTransition?.({ from, event, to, slot: this.booted });
    this.deps.faults?.(`persisted:${to}`);
    this.publishState();
    if (to === 'Idle') {
      this.deploymentAbort = new AbortController();
      void this.publishInventory();
    }
  }

  async persist(): Promise<void> {
    await this.deps.store.save(this.rec);
    this.deps.faults?.(`persisted:${this.rec.state}`);
  }

  /** Saves progress inside a state (download checkpoints) without changing it. */
  async checkpoint(patch: (d: Deployment) => void): Promise<void> {
    if (this.rec.deployment) patch(this.rec.deployment);
    await this.deps.store.save(this.rec);
    this.deps.faults?.(`checkpoint:${this.rec.state}`);
  }

  get signal(): AbortSignal {
    return this.deploymentAbort.signal;
  }

  get deployment(): Deployment {
    const d = this.rec.deployment;
    if (!d) throw new Error(`state ${this.rec.state} without a deployment`);
    return d;
  }

  // ---- reports ------------------------------------------------------------------------------

  /** Milestones get an id from (deployment, attempt, kind): a repeat after a crash is one event. */
  milestoneId(kind: string): string {
    const d = this.deployment;
    const h = createHash('sha256').update(d.id).digest('hex').slice(0, 16);
    return `${h}.${d.attempt}.${kind}`;
  }

  async event(kind: Parameters<Reporter['event']>[0], f: EventFields, durable: boolean, eventId?: string) {
    await this.reporter.event(kind, f, { durable, ...(eventId ? { eventId } : {}) });
  }

  async milestone(kind: Parameters<Reporter['event']>[0], f: Omit<EventFields, 'deploymentId'> = {}) {
    const d = this.deployment;
    await this.event(kind, { deploymentId: d.id, version: d.version, ...f }, true, this.milestoneId(kind));
  }

  publishState(): void {
    const c = this.rec.slots[this.booted];
    this.reporter.state({
      version: c?.version ?? null,
      imageSha256: c?.imageSha256 ?? null,
      securityVersion: this.rec.securityVersion,
      activeSlot: this.booted,
      agentState: this.rec.state,
      deploymentId: this.rec.deployment?.id ?? null,
      lastError: this.rec.lastError,
    });
  }

  async publishInventory(): Promise<void> {
    const slotInfo = async (name: Slot) => {
      const c = this.rec.slots[name];
      const size = await this.deps.slots
        .device(name)
        .size()
        .catch(() => 0);
      return { name, size, version: c?.version ?? null, imageSha256: c?.imageSha256 ?? null };
    };
    const free = await statfs(this.config.dataDir).then(
      (s) => s.bavail * s.bsize,
      () => undefined,
    );
    this.reporter.inventory({
      hardware: this.config.hardware,
      bootloader: this.deps.bootloader.kind,
      agentVersion: this.config.agentVersion ?? AGENT_VERSION,
      slots: [await slotInfo('A'), await slotInfo('B')],
      ...(free !== undefined ? { freeSpaceBytes: free } : {}),
      ...(this.config.tags ? { tags: this.config.tags } : {}),
    });
  }

  /**
   * The periodic state report. With an external broker the server sees no connects or
   * disconnects (and protocol defines no last-will message), so a device counts as online only
   * while its last report is younger than the server's `offlineAfterMs`; this keeps an idle,
   * connected device online. Nothing is sent while offline: the next connect reports anyway.
   */
  private async heartbeat(): Promise<void> {
    const random = this.deps.random ?? Math.random;
    const signal = this.heartbeatAbort.signal;
    while (!this.stopped && !signal.aborted) {
      const j = STATE_REPORT.jitter;
      const ms = Math.round(this.stateIntervalMs * (1 - j + 2 * j * random()));
      try {
        await this.deps.clock.sleep(ms, signal);
      } catch {
        return; // stopped, halted or killed
      }
      if (this.stopped || signal.aborted) return;
      if (this.deps.transport.connected()) this.publishState();
    }
  }

  private onConnect(): void {
    this.reporter.onConnect();
    for (const w of this.onlineWaiters) w();
    // TUF: fetch newer roots when the server is reachable (queued: never during an offer's checks).
    if (this.deps.rootSource && !this.stopped)
      void this.enqueue(async () => {
        await this.refreshTrust(this.deps.rootSource!).catch(() => undefined);
      });
  }

  /**
   * The TUF root update: root N+1, N+2… from the server, each verified and kept, then the final
   * root must be unexpired. A server that cannot be reached or serves a root that does not verify
   * leaves the device on the root it has (reported); an expired final root throws.
   */
  async refreshTrust(source: RootSource | null): Promise<RootMetadata> {
    const now = this.deps.clock.now();
    if (source) {
      try {
        this.root = await this.deps.trust.update(now, source, this.lifetime.signal);
        return this.root;
      } catch (err) {
        if (isKilled(err)) throw err;
        if (!isFlotillaError(err, 'FLOTILLA_ERR_EXPIRED')) {
          const reason = toErrorReport(err);
          this.log.warn(
            { code: reason.code, err: reason.message },
            'root update failed; keeping the current root',
          );
          await this.event(
            'log',
            { deploymentId: null, reason, detail: { trust: 'root update failed' } },
            false,
          );
        }
      }
    }
    this.root = await this.deps.trust.update(now);
    return this.root;
  }

  waitOnline(ms: number): Promise<boolean> {
    if (this.deps.transport.connected()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.onlineWaiters.delete(done);
        resolve(this.deps.transport.connected());
      };
      const t = setTimeout(done, ms);
      this.onlineWaiters.add(done);
    });
  }

  // ---- commands and offers --------------------------------------------------------------------

  private onCommand(payload: Uint8Array): void {
    let cmd: DeviceCommand;
    try {
      cmd = decodeDeviceMessage('commands', payload);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'malformed command ignored');
      void this.event('log', { deploymentId: null, reason: toErrorReport(err) }, false).catch(
        () => undefined,
      );
      return;
    }
    this.enqueue(() => this.handleCommand(cmd));
  }

  /** Commands run one at a time, never concurrently with a state transition they would race. */
  private enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.commands.then(fn).catch((err) => {
      if (isKilled(err)) return this.die();
      this.log.error({ err: (err as Error).message }, 'command failed');
    });
    this.commands = p;
    return p;
  }

  async handleCommand(cmd: DeviceCommand): Promise<void> {
    if (this.stopped) return;
    if (this.rec.recentCommands.includes(cmd.commandId)) return; // QoS 1 redelivery
    this.rec.recentCommands = [...this.rec.recentCommands, cmd.commandId].slice(-16);
    if (cmd.type === 'offer') return this.acceptOffer(cmd.offer, cmd.rootUrl);
    if (cmd.type === 'cancel') {
      const d = this.rec.deployment;
      if (
        d &&
        d.id === cmd.deploymentId &&
        ['Offered', 'Downloading', 'Installing', 'Installed'].includes(this.rec.state)
      )
        this.deploymentAbort.abort(
          new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', `by command ${cmd.commandId}`),
        );
      return;
    }
    if (cmd.type === 'reboot-request' && this.rec.state === 'Idle') {
      await this.event('rebooting', { deploymentId: null }, true);
      await this.reporter.flush();
      await this.deps.reboot.reboot('requested by the server');
      this.halted = true;
      this.stopped = true;
      this.heartbeatAbort.abort();
    }
  }

  /** Woken when a fresh offer for the running deployment replaced its artifact URLs. */
  private readonly urlWaiters = new Set<() => void>();

  /**
   * A signed artifact URL expired mid-download: ask the server for a fresh offer of the same
   * deployment (`offer-refresh`) and wait, bounded, until it arrives and was verified. Returns the
   * new URL; the download then resumes with Range from where it stopped.
   */
  async refreshArtifactUrl(which: 'full' | 'delta'): Promise<string> {
    const d = this.deployment;
    const current = () => (which === 'full' ? d.full.url : (d.delta?.url ?? ''));
    const before = current();
    const wait = new AbortController();
    const onOuter = () => wait.abort(this.signal.reason);
    this.signal.addEventListener('abort', onOuter, { once: true });
    const woken = () => wait.abort();
    this.urlWaiters.add(woken);
    try {
      await this.event('offer-refresh', { deploymentId: d.id, version: d.version }, false);
      await this.deps.clock
        .sleep(this.limits.download.urlRefreshTimeoutMs, wait.signal)
        .catch(() => undefined);
    } finally {
      this.urlWaiters.delete(woken);
      this.signal.removeEventListener('abort', onOuter);
    }
    this.signal.throwIfAborted();
    if (current() === before)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_URL_EXPIRED',
        `no fresh offer for ${d.id} within ${this.limits.download.urlRefreshTimeoutMs} ms`,
        { component: 'downloader' },
      );
    return current();
  }

  /**
   * A re-sent offer for the deployment under way: verified like any offer, and if it names the
   * same payloads, its (freshly signed) URLs replace the old ones. Anything else is ignored.
   */
  private async refreshFromOffer(envelope: unknown): Promise<void> {
    const d = this.rec.deployment;
    if (!d || d.origin !== 'server' || (this.rec.state !== 'Offered' && this.rec.state !== 'Downloading'))
      return;
    let offer: ReturnType<typeof verifyOffer>['offer'];
    try {
      offer = verifyOffer(envelope, {
        root: this.root,
        now: this.deps.clock.now(),
        deviceId: this.config.deviceId,
        device: { hardware: this.config.hardware, securityVersion: this.rec.securityVersion },
        activeImageSha256: d.delta?.fromImageSha256 ?? null,
      }).offer;
    } catch (err) {
      if (!(d.deltaRefused && isFlotillaError(err, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH'))) {
        this.log.warn({ err: (err as Error).message }, 'refreshed offer refused');
        return;
      }
      offer = (envelope as { signed: ReturnType<typeof verifyOffer>['offer'] }).signed;
    }
    if (offer.full.sha256 !== d.full.sha256 || offer.full.size !== d.full.size) return;
    d.full = { ...d.full, url: offer.full.url };
    if (d.delta && offer.delta) d.delta = { ...d.delta, url: offer.delta.url };
    d.offerFile = await this.storeJson('offers', d.id, envelope);
    await this.checkpoint(() => undefined);
    for (const w of this.urlWaiters) w();
  }

  /** Verifies an offer completely before anything is stored or downloaded. */
  async acceptOffer(envelope: unknown, rootUrl?: string): Promise<void> {
    const signed = (envelope as { signed?: { deploymentId?: unknown } })?.signed;
    const claimedId = typeof signed?.deploymentId === 'string' ? signed.deploymentId.slice(0, 64) : null;
    if (this.rec.state !== 'Idle') {
      if (claimedId && claimedId === this.rec.deployment?.id) return this.refreshFromOffer(envelope);
      return this.rejectOffer(
        claimedId,
        new AgentError('FLOTILLA_ERR_AGENT_BUSY', `in state ${this.rec.state}`),
      );
    }
    if (this.booted !== this.rec.committedSlot) return this.rejectOffer(claimedId, this.strandedError());
    // Rotate first (TUF): the offer may be signed by keys only a newer root names.
    const source =
      this.deps.rootSource ??
      (rootUrl ? new HttpRootSource(rootUrl, this.deps.fetcher, this.limits.trust) : null);
    let root: RootMetadata;
    try {
      root = await this.refreshTrust(source);
    } catch (err) {
      if (isKilled(err)) throw err;
      return this.rejectOffer(claimedId, err);
    }
    const now = this.deps.clock.now();
    const active = this.rec.slots[this.booted];
    const ctx = {
      root,
      now,
      deviceId: this.config.deviceId,
      device: { hardware: this.config.hardware, securityVersion: this.rec.securityVersion },
      activeImageSha256: this.booted === this.rec.committedSlot ? (active?.imageSha256 ?? null) : null,
    };
    let deltaRefused: ErrorReport | null = null;
    let verified: ReturnType<typeof verifyOffer>;
    try {
      verified = verifyOffer(envelope, ctx);
    } catch (err) {
      // verifyOffer checks the delta base last: everything else already passed.
      if (
        isFlotillaError(err, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH') &&
        this.config.deltaFallbackToFull !== false
      ) {
        deltaRefused = toErrorReport(err);
        const offer = (envelope as { signed: ReturnType<typeof verifyOffer>['offer'] }).signed;
        verified = { offer, release: verifyRelease(offer.release, root, now) };
      } else {
        return this.rejectOffer(claimedId, err);
      }
    }
    const { offer, release, delta } = verified;
    if (release.image.sha256 === active?.imageSha256)
      return this.rejectOffer(
        offer.deploymentId,
        new AgentError('FLOTILLA_ERR_AGENT_ALREADY_INSTALLED', release.version),
      );
    const dep = await this.newDeployment('server', offer.deploymentId, offer.release, release, {
      url: offer.full.url,
      size: offer.full.size,
      sha256: offer.full.sha256,
    });
    dep.offerFile = await this.storeJson('offers', dep.id, envelope);
    if (delta && offer.delta && !deltaRefused)
      dep.delta = {
        url: offer.delta.url,
        size: delta.deltaSize,
        sha256: delta.deltaSha256,
        fromImageSha256: delta.fromImageSha256,
        codec: delta.codec,
      };
    dep.deltaRefused = deltaRefused;
    await this.begin(dep);
  }

  /** Running an uncommitted slot: installing would overwrite the only known-good one. */
  private strandedError(): AgentError {
    return new AgentError(
      'FLOTILLA_ERR_AGENT_ROLLBACK_PENDING',
      `running slot ${this.booted}, the committed slot is ${this.rec.committedSlot}`,
    );
  }

  private async rejectOffer(deploymentId: string | null, err: unknown): Promise<void> {
    const reason = toErrorReport(err);
    this.log.warn({ deploymentId, code: reason.code }, 'offer rejected');
    await this.event('offer-rejected', { deploymentId, reason }, true);
  }

  /**
   * A local install (USB stick): the same checks as an offer minus the offer itself, then the same
   * state machine. Resolves with the deployment id when the machine rests (halted for the reboot,
   * or back in Idle); rejects when the install is refused (busy, stranded, bad signature…).
   */
  async installLocal(bundle: {
    path: string;
    manifest: unknown;
    imageOffset: number;
    imageSize: number;
  }): Promise<string> {
    // enqueue() logs and swallows a command's failure; a local install must surface its refusal.
    let refused: unknown = null;
    let id = '';
    await this.enqueue(async () => {
      try {
        id = await this.beginLocal(bundle);
      } catch (err) {
        if (isKilled(err)) throw err;
        refused = err;
      }
    });
    // Surface a refusal to the caller (the CLI prints it and exits non-zero).
    if (refused) throw refused;
    await this.settled();
    return id;
  }

  private async beginLocal(bundle: {
    path: string;
    manifest: unknown;
    imageOffset: number;
    imageSize: number;
  }): Promise<string> {
    if (this.rec.state !== 'Idle')
      throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `an update is in state ${this.rec.state}`);
    if (this.booted !== this.rec.committedSlot) throw this.strandedError();
    const root = await this.refreshTrust(null); // local roots only (offline), final one unexpired
    const now = this.deps.clock.now();
    const release = verifyRelease(bundle.manifest, root, now, { allowKinds: ['release', 'recovery'] });
    checkInstallable(release, {
      hardware: this.config.hardware,
      securityVersion: this.rec.securityVersion,
    });
    if (bundle.imageSize !== release.image.size)
      throw new AgentError('FLOTILLA_ERR_AGENT_BUNDLE', 'image section size differs from the manifest');
    const id = `local-${release.image.sha256.slice(0, 16)}-${now.getTime()}`;
    const dep = await this.newDeployment('local', id, bundle.manifest, release, {
      url: new URL(`file://${bundle.path}`).href,
      size: release.image.size,
      sha256: release.image.sha256,
      offset: bundle.imageOffset,
    });
    await this.begin(dep);
    return id;
  }

  private async newDeployment(
    origin: Deployment['origin'],
    id: string,
    releaseEnv: unknown,
    release: ReleaseManifest,
    full: Deployment['full'],
  ): Promise<Deployment> {
    const attempt = this.rec.lastDeployment?.id === id ? this.rec.lastDeployment.attempt + 1 : 1;
    return {
      id,
      attempt,
      origin,
      version: release.version,
      kind: release.kind,
      imageSha256: release.image.sha256,
      securityVersion: release.securityVersion,
      fromSlot: this.booted,
      targetSlot: otherSlot(this.booted),
      releaseFile: await this.storeRelease(releaseEnv, release),
      offerFile: null,
      method: null,
      full,
      delta: null,
      deltaRefused: null,
      verifiedChunks: 0,
    };
  }

  /** Persist, then act: the offer-accepted / local-install report is the Offered step's first work. */
  private async begin(dep: Deployment): Promise<void> {
    await this.transition('offer', undefined, (r) => {
      r.deployment = dep;
      r.lastError = null;
      r.runs = { Offered: 0 };
    });
    this.kick();
  }

  // ---- files on the data partition ----------------------------------------------------------

  async storeRelease(envelope: unknown, m: ReleaseManifest): Promise<string> {
    return this.storeJson('releases', m.image.sha256, envelope);
  }

  private async storeJson(dir: string, key: string, value: unknown): Promise<string> {
    const name = createHash('sha256').update(key).digest('hex').slice(0, 32);
    const rel = `${dir}/${name}.json`;
    await mkdir(join(this.config.dataDir, dir), { recursive: true });
    await atomicWriteFile(join(this.config.dataDir, rel), JSON.stringify(value));
    return rel;
  }

  async loadRelease(rel: string): Promise<ReleaseManifest> {
    const env = parseJson(await readFile(join(this.config.dataDir, rel)));
    return (env as { signed: ReleaseManifest }).signed;
  }

  async loadOffer(rel: string): Promise<unknown> {
    return parseJson(await readFile(join(this.config.dataDir, rel)));
  }

  spoolPath(d: Deployment): string {
    return join(this.config.dataDir, `spool-${d.imageSha256.slice(0, 16)}.delta`);
  }

  // ---- hooks and locks ----------------------------------------------------------------------

  /**
   * Runs the hooks of one point in order. Exit 0 continues, 21 retries later (bounded), anything
   * else vetoes — except at points where the decision is already made (after-commit, on-rollback),
   * where the output is still reported but the exit code changes nothing.
   */
  async runHooks(point: HookPoint): Promise<void> {
    const hooks = this.deps.hooks;
    if (!hooks) return;
    const d = this.deployment;
    const binding = point !== 'after-commit' && point !== 'on-rollback';
    for (const name of await hooks.list(point)) {
      for (let retry = 0; ; retry++) {
        this.signal.throwIfAborted();
        const r = await hooks.run(point, name, {
          deploymentId: d.id,
          version: d.version,
          targetSlot: d.targetSlot,
        });
        await this.reportHookOutput(point, r);
        if (r.exitCode === HOOK_EXIT.ok || !binding) break;
        if (r.exitCode === HOOK_EXIT.retryLater) {
          if (retry >= this.limits.hooks.maxRetries)
            throw new AgentError('FLOTILLA_ERR_AGENT_HOOK_RETRY_EXHAUSTED', `${point}/${name}`);
          await this.deps.clock.sleep(this.limits.hooks.retryIntervalMs, this.signal);
          continue;
        }
        throw new AgentError('FLOTILLA_ERR_AGENT_HOOK_VETO', `${point}/${name} exited ${r.exitCode}`);
      }
    }
  }

  private async reportHookOutput(
    point: HookPoint,
    r: { name: string; exitCode: number | null; output: string; truncated: boolean },
  ) {
    // The schema bounds one detail string to 4 KiB: up to 10 KiB of output goes in ordered parts.
    const text = r.output.slice(-this.limits.hooks.maxOutputBytes);
    const parts = Math.max(1, Math.ceil(text.length / 4096));
    for (let i = 0; i < parts; i++) {
      await this.event(
        'hook-output',
        {
          deploymentId: this.rec.deployment?.id ?? null,
          detail: {
            point,
            hook: r.name,
            exitCode: r.exitCode,
            part: i + 1,
            parts,
            truncated: r.truncated,
            output: text.slice(i * 4096, (i + 1) * 4096),
          },
        },
        true,
      );
    }
  }

  /** Defers the reboot while an application holds the update lock (bounded). */
  async waitForUpdateLock(): Promise<void> {
    const lock = this.deps.updateLock ?? noUpdateLock;
    const start = this.deps.clock.monotonicMs();
    let reported = false;
    while (await lock.held()) {
      if (this.deps.clock.monotonicMs() - start > this.limits.updateLock.maxWaitMs)
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_UPDATE_LOCKED',
          `held for more than ${this.limits.updateLock.maxWaitMs} ms`,
        );
      if (!reported) {
        reported = true;
        await this.event(
          'log',
          { deploymentId: this.deployment.id, detail: { waiting: 'update lock held' } },
          false,
        );
      }
      await this.deps.clock.sleep(this.limits.updateLock.pollMs, this.signal);
    }
  }

  // ---- drift --------------------------------------------------------------------------------

  private scheduleDrift(ms: number): void {
    clearTimeout(this.driftTimer);
    this.driftTimer = setTimeout(() => {
      void this.enqueue(async () => {
        await this.checkDrift();
      }).finally(() => {
        if (!this.stopped) this.scheduleDrift(this.limits.drift.intervalMs);
      });
    }, ms);
    this.driftTimer.unref();
  }

  /** Hashes the active slot against its release manifest; reports the first differing chunk. */
  async checkDrift(): Promise<{ drifted: boolean; firstBadChunk: number | null } | null> {
    if (this.rec.state !== 'Idle' || this.booted !== this.rec.committedSlot) return null;
    const content = this.rec.slots[this.booted];
    if (!content?.releaseFile) return null;
    const m = await this.loadRelease(content.releaseFile);
    const r = await hashSlot(this.deps.slots.device(this.booted), m.image, this.limits.readBlockBytes, {
      signal: this.lifetime.signal,
    });
    const drifted = r.sha256 !== m.image.sha256 || r.firstBadChunk !== null;
    if (drifted) {
      await this.event(
        'drift',
        {
          deploymentId: null,
          version: m.version,
          detail: {
            slot: this.booted,
            firstBadChunk: r.firstBadChunk,
            badChunks: r.badChunks,
            chunkSize: m.image.chunkSize,
            expectedSha256: m.image.sha256,
            actualSha256: r.sha256,
          },
        },
        true,
      );
    }
    return { drifted, firstBadChunk: r.firstBadChunk };
  }

  // ---- status ---------------------------------------------------------------------------------

  async status(): Promise<AgentStatus> {
    const bl = await this.deps.bootloader.read().then(
      (s) => ({ kind: this.deps.bootloader.kind, ...s }),
      (e: Error) => ({ kind: this.deps.bootloader.kind, error: e.message }),
    );
    const d = this.rec.deployment;
    return {
      deviceId: this.config.deviceId,
      state: this.rec.state,
      bootedSlot: this.booted,
      committedSlot: this.rec.committedSlot,
      slots: this.rec.slots,
      securityVersion: this.rec.securityVersion,
      bootloader: bl,
      deployment: d
        ? {
            id: d.id,
            version: d.version,
            targetSlot: d.targetSlot,
            method: d.method,
            origin: d.origin,
            verifiedChunks: d.verifiedChunks,
          }
        : null,
      lastError: this.rec.lastError,
      lastDeployment: this.rec.lastDeployment,
      halted: this.halted,
    };
  }
}
