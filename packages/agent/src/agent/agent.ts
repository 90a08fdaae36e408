import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type DeviceCommand,
  decodeDeviceMessage,
  isFlotillaError,
  parseJson,
  type RootMetadata,
  type Slot,
  verifyRelease,
} from '@flotilla/protocol';
import { AgentError, type ErrorReport, isKilled, toErrorReport } from '../errors.js';
import { type AgentLimits, resolveLimits, STATE_REPORT } from '../limits.js';
import { type Logger, silentLogger } from '../logger.js';
import { type EventFields, Reporter } from '../report/reporter.js';
import type { AgentState, StepEvent } from '../state/machine.js';
import { type AgentRecord, type Deployment, initialRecord, type SlotContent } from '../state/record.js';
import { FileSecurityFloor, type SecurityFloorStore } from '../state/security-floor.js';
import { FileStateStore } from '../state/store.js';
import type { RootSource } from '../trust/root-source.js';
import { CommandHandler, type LocalBundle } from './commands.js';
import { DataFiles } from './data-files.js';
import { runHooks, waitForUpdateLock } from './deployment-hooks.js';
import type { AgentConfig, AgentDeps } from './deps.js';
import { checkSlotDrift, type DriftResult } from './drift.js';
import { Heartbeat } from './heartbeat.js';
import { AgentReporting, type AgentStatus } from './reporting.js';
import type { StepContext, StepOutcome } from './step-context.js';
import { STEPS } from './steps.js';
import { RecordKeeper } from './transitions.js';

export type { AgentStatus } from './reporting.js';

export function createAgent(config: AgentConfig, deps: AgentDeps): Agent {
  return new Agent(config, deps);
}

/**
 * One device agent: its lifecycle and the runner of the state machine. Embeddable: no
 * process-global state, every I/O through `deps`, `stop()` releases everything. `start()` loads
 * the trust root and the persisted state, resumes or rolls back whatever a power cut interrupted
 * (the state's work simply runs again: every step is idempotent), then waits for offers.
 *
 * The concerns live next door: state transitions (transitions.ts), the work of each state
 * (steps.ts, through a StepContext), reports (reporting.ts), the heartbeat (heartbeat.ts), the
 * server's commands and offers (commands.ts), hooks (deployment-hooks.ts) and drift (drift.ts).
 */
export class Agent {
  private readonly limits: AgentLimits;
  private readonly log: Logger;
  private readonly reporting: AgentReporting;
  /** The anti-rollback floor's own durable copy (the state record and the bootloader hold others). */
  private readonly floor: SecurityFloorStore;
  private readonly keeper: RecordKeeper;
  private readonly files: DataFiles;
  private readonly commandHandler: CommandHandler;
  private readonly heartbeat: Heartbeat;
  private trustedRoot!: RootMetadata;
  private booted!: Slot;
  /** The state a power cut or reboot interrupted, when this start resumed one. */
  private resumed: AgentState | null = null;
  private running: Promise<void> | null = null;
  private commands: Promise<void> = Promise.resolve();
  private deploymentAbort = new AbortController();
  private readonly lifetime = new AbortController();
  private stopped = false;
  private dead = false;
  private halted = false;
  private driftTimer: NodeJS.Timeout | undefined;
  private onlineWaiters = new Set<() => void>();

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {
    this.limits = resolveLimits(config.limits);
    const intervalMs = config.stateIntervalMs ?? STATE_REPORT.defaultIntervalMs;
    if (
      !Number.isInteger(intervalMs) ||
      intervalMs < STATE_REPORT.minIntervalMs ||
      intervalMs > STATE_REPORT.maxIntervalMs
    )
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_CONFIG',
        `stateIntervalMs ${intervalMs} is outside ${STATE_REPORT.minIntervalMs}..${STATE_REPORT.maxIntervalMs}`,
      );
    this.log = (deps.logger ?? silentLogger).child({ device: config.deviceId });
    this.reporting = new AgentReporting(
      new Reporter(deps.transport, deps.outbox, deps.clock, this.log),
      config,
      deps,
    );
    this.floor = deps.securityFloor ?? new FileSecurityFloor(join(config.dataDir, 'security-floor.json'));
    this.keeper = new RecordKeeper(deps.store, deps);
    this.files = new DataFiles(config.dataDir);
    this.commandHandler = new CommandHandler(this.commandContext());
    this.heartbeat = new Heartbeat({
      clock: deps.clock,
      intervalMs,
      random: deps.random ?? Math.random,
      beat: () => {
        if (!this.stopped && this.deps.transport.connected()) this.publishState();
      },
    });
  }

  // ---- what others may read -------------------------------------------------------------------

  /** The persisted record (read-only: it changes only through the state machine). */
  get record(): Readonly<AgentRecord> {
    return this.keeper.record;
  }
  get bootedSlot(): Slot {
    return this.booted;
  }
  /** The trust root in force (newest verified). */
  get root(): RootMetadata {
    return this.trustedRoot;
  }
  /** The state a power cut or reboot interrupted, when this start resumed one. */
  get resumedFrom(): AgentState | null {
    return this.resumed;
  }
  get isHalted(): boolean {
    return this.halted;
  }
  get isDead(): boolean {
    return this.dead;
  }

  /** Sends what the outbox holds (durable events) now; resolves when the broker took it. */
  flushReports(): Promise<void> {
    return this.reporting.reporter.flush();
  }

  async status(): Promise<AgentStatus> {
    return this.reporting.status(this.record, this.booted, this.halted);
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async start(): Promise<void> {
    try {
      await mkdir(this.config.dataDir, { recursive: true });
      // Expired or not: a device offline past its root's expiry must still start, connect and
      // fetch the newer root; expiry is enforced before an offer or a local install is trusted.
      this.trustedRoot = await this.deps.trust.loadTrusted();
      this.booted = await this.deps.bootloader.bootedSlot();
      let recoveredFrom: AgentState | null = null;
      let corrupt: ErrorReport | null = null;
      let loaded: AgentRecord | null = null;
      try {
        loaded = await this.deps.store.load();
      } catch (err) {
        if (isKilled(err)) throw err;
        corrupt = toErrorReport(err);
        if (this.deps.store instanceof FileStateStore) await this.deps.store.quarantine(String(Date.now()));
      }
      if (!loaded) {
        this.keeper.adopt(await this.firstRecord());
        await this.keeper.persist();
      } else {
        this.keeper.adopt(loaded);
        if (loaded.state !== 'Idle') {
          // Persist, then act: the re-run counts against the loop breaker before it starts.
          const state = loaded.state;
          recoveredFrom = state;
          this.resumed = state;
          await this.keeper.persist((record) => {
            record.runs[state] = (record.runs[state] ?? 0) + 1;
          });
        }
      }
      const bootEnvRepaired = await this.repairedBootEnv();
      const floorReport = await this.reconcileFloor();
      this.deps.transport.start({
        onCommand: (payload) => this.onCommand(payload),
        onConnect: () => this.onConnect(),
        onDisconnect: () => undefined,
      });
      this.publishState();
      await this.reporting.publishInventory(this.record);
      void this.heartbeat.run();
      if (corrupt) await this.reporting.event('log', { deploymentId: null, reason: corrupt }, true);
      if (floorReport) await this.reporting.event('log', { deploymentId: null, ...floorReport }, true);
      if (bootEnvRepaired)
        await this.reporting.event('log', { deploymentId: null, reason: bootEnvRepaired }, true);
      if (recoveredFrom) {
        this.log.warn({ state: recoveredFrom }, 'resuming after a restart');
        await this.reporting.event(
          'log',
          {
            deploymentId: this.record.deployment?.id ?? null,
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
    this.heartbeat.stop();
    this.lifetime.abort(new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', 'agent stopping'));
    this.deploymentAbort.abort(new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', 'agent stopping'));
    for (const wake of this.onlineWaiters) wake();
    await this.running?.catch(() => undefined);
    await this.commands.catch(() => undefined);
    await this.deps.transport.stop();
  }

  /** Resolves when the machine rests: Idle, halted for a reboot, stopped or killed. */
  async settled(): Promise<void> {
    for (;;) {
      await this.commands;
      const running = this.running;
      if (!running) return;
      await running;
    }
  }

  /** Fault injection hit: stop dead, as a power cut would — no state write, no report. */
  private die(): void {
    this.dead = true;
    this.stopped = true;
    clearTimeout(this.driftTimer);
    this.heartbeat.stop();
    this.lifetime.abort(new AgentError('FLOTILLA_ERR_AGENT_KILLED', 'killed'));
    this.deploymentAbort.abort(new AgentError('FLOTILLA_ERR_AGENT_KILLED', 'killed'));
    void this.deps.transport.stop();
  }

  /** A reboot is under way (ours or the server's): nothing more may run in this process. */
  private halt(): void {
    this.halted = true;
    this.stopped = true;
    this.heartbeat.stop();
  }

  private async firstRecord(): Promise<AgentRecord> {
    let content: SlotContent | null = null;
    let securityVersion = 0;
    if (this.config.factoryReleaseFile) {
      const envelope = parseJson(await readFile(this.config.factoryReleaseFile));
      const manifest = verifyRelease(envelope, this.trustedRoot, this.deps.clock.now(), {
        allowKinds: ['release', 'recovery'],
      });
      content = {
        version: manifest.version,
        imageSha256: manifest.image.sha256,
        releaseFile: await this.files.storeRelease(envelope, manifest),
      };
      securityVersion = manifest.securityVersion;
    }
    return initialRecord(this.booted, content, securityVersion);
  }

  /** A torn bootloader environment is rebuilt by the first read; said once, here, at start. */
  private async repairedBootEnv(): Promise<ErrorReport | null> {
    const found = await this.deps.bootloader.read().then(
      (state) => state.repaired ?? null,
      (err) => {
        if (isKilled(err)) throw err;
        return null; // unreadable: the steps that need it report it
      },
    );
    if (!found) return null;
    this.log.warn({ code: 'FLOTILLA_ERR_AGENT_BOOTENV_REPAIRED' }, found);
    return toErrorReport(new AgentError('FLOTILLA_ERR_AGENT_BOOTENV_REPAIRED', found));
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
      (state) => state.securityFloor ?? null,
      (err) => {
        if (isKilled(err)) throw err;
        return null;
      },
    );
    const fromState = this.record.securityVersion;
    const floor = Math.max(fromState, fromFile ?? 0, fromBoot ?? 0);
    if (floor > fromState)
      await this.keeper.save((record) => {
        record.securityVersion = floor;
      });
    if (fromFile === null || fromFile < floor) await this.floor.raise(floor);
    if (!unreadable && floor === fromState) return null;
    return {
      ...(unreadable ? { reason: unreadable } : {}),
      detail: { securityFloor: floor, fromState, fromFile, fromBootloader: fromBoot },
    };
  }

  // ---- the runner -----------------------------------------------------------------------------

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = this.runLoop().finally(() => {
      this.running = null;
    });
  }

  private async runLoop(): Promise<void> {
    const context = this.stepContext();
    try {
      while (!this.stopped && this.record.state !== 'Idle') {
        const state = this.record.state;
        let outcome: StepOutcome;
        if ((this.record.runs[state] ?? 0) > this.limits.maxStateRuns) {
          outcome = {
            event: 'loop',
            error: toErrorReport(
              new AgentError(
                'FLOTILLA_ERR_AGENT_STATE_LOOP',
                `${state} started ${this.record.runs[state]} times`,
              ),
            ),
          };
        } else {
          try {
            outcome = await STEPS[state](context);
          } catch (err) {
            if (isKilled(err) || this.stopped) throw err;
            this.log.warn({ state, err: (err as Error).message }, 'step failed');
            outcome = { event: 'error', error: toErrorReport(err) };
          }
        }
        if ('halt' in outcome) {
          this.halt();
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

  /** The state changes (transitions.ts), then observers hear of it. */
  private async transition(
    event: StepEvent,
    error?: ErrorReport,
    patch?: (record: AgentRecord) => void,
  ): Promise<void> {
    const { to } = await this.keeper.transition(event, this.booted, error, patch);
    this.publishState();
    if (to === 'Idle') {
      this.deploymentAbort = new AbortController();
      void this.reporting.publishInventory(this.record);
    }
  }

  private publishState(): void {
    this.reporting.publishState(this.record, this.booted);
  }

  /** What a step may read and do (step-context.ts); the record stays read-only to it. */
  private stepContext(): StepContext {
    const agent = this;
    const deps = this.deps;
    return {
      get deployment() {
        return agent.keeper.deployment;
      },
      get bootedSlot() {
        return agent.booted;
      },
      get committedSlot() {
        return agent.record.committedSlot;
      },
      get securityVersion() {
        return agent.record.securityVersion;
      },
      get lastError() {
        return agent.record.lastError;
      },
      get resumedFrom() {
        return agent.resumed;
      },
      get root() {
        return agent.trustedRoot;
      },
      device: { deviceId: this.config.deviceId, hardware: this.config.hardware },
      limits: this.limits,
      log: this.log,
      get signal() {
        return agent.deploymentAbort.signal;
      },
      io: {
        slots: deps.slots,
        bootloader: deps.bootloader,
        clock: deps.clock,
        fetcher: deps.fetcher,
        reboot: deps.reboot,
        ...(deps.health ? { health: deps.health } : {}),
        ...(deps.faults ? { faults: deps.faults } : {}),
        ...(deps.random ? { random: deps.random } : {}),
      },
      raiseFloor: async (floor) => {
        await this.floor.raise(floor);
      },
      event: (kind, fields, durable) => this.reporting.event(kind, fields, durable),
      milestone: (kind, fields) => this.reporting.milestone(this.keeper.deployment, kind, fields),
      flushReports: () => this.reporting.reporter.flush(),
      checkpoint: (patch) => this.keeper.checkpoint(patch),
      loadRelease: (relativePath) => this.files.loadRelease(relativePath),
      loadEnvelope: (relativePath) => this.files.loadEnvelope(relativePath),
      spoolPath: (deployment) => this.files.spoolPath(deployment),
      runHooks: (point) => this.runHooks(point),
      waitForUpdateLock: () =>
        waitForUpdateLock({
          lock: deps.updateLock,
          limits: this.limits.updateLock,
          clock: deps.clock,
          signal: this.deploymentAbort.signal,
          onWaiting: () =>
            this.reporting.event(
              'log',
              { deploymentId: this.keeper.deployment.id, detail: { waiting: 'update lock held' } },
              false,
            ),
        }),
      waitOnline: (ms) => this.waitOnline(ms),
      refreshArtifactUrl: (which) => this.commandHandler.refreshArtifactUrl(this.keeper.deployment, which),
    };
  }

  private runHooks(point: Parameters<StepContext['runHooks']>[0]): Promise<void> {
    return runHooks(point, {
      hooks: this.deps.hooks,
      deployment: this.keeper.deployment,
      limits: this.limits.hooks,
      clock: this.deps.clock,
      signal: this.deploymentAbort.signal,
      report: (hookPoint, run) =>
        this.reporting.hookOutput(
          this.record.deployment?.id ?? null,
          hookPoint,
          run,
          this.limits.hooks.maxOutputBytes,
        ),
    });
  }

  // ---- connection and trust -------------------------------------------------------------------

  private onConnect(): void {
    this.reporting.reporter.onConnect();
    for (const wake of this.onlineWaiters) wake();
    // TUF: fetch newer roots when the server is reachable (queued: never during an offer's checks).
    const rootSource = this.deps.rootSource;
    if (rootSource && !this.stopped)
      void this.enqueue(async () => {
        await this.refreshTrust(rootSource).catch(() => undefined);
      });
  }

  /**
   * The TUF root update: root N+1, N+2… from the server, each verified and kept, then the final
   * root must be unexpired. A server that cannot be reached or serves a root that does not verify
   * leaves the device on the root it has (reported); an expired final root throws.
   */
  private async refreshTrust(source: RootSource | null): Promise<RootMetadata> {
    const now = this.deps.clock.now();
    if (source) {
      try {
        this.trustedRoot = await this.deps.trust.update(now, source, this.lifetime.signal);
        return this.trustedRoot;
      } catch (err) {
        if (isKilled(err)) throw err;
        if (!isFlotillaError(err, 'FLOTILLA_ERR_EXPIRED')) {
          const reason = toErrorReport(err);
          this.log.warn(
            { code: reason.code, err: reason.message },
            'root update failed; keeping the current root',
          );
          await this.reporting.event(
            'log',
            { deploymentId: null, reason, detail: { trust: 'root update failed' } },
            false,
          );
        }
      }
    }
    this.trustedRoot = await this.deps.trust.update(now);
    return this.trustedRoot;
  }

  private waitOnline(ms: number): Promise<boolean> {
    if (this.deps.transport.connected()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.onlineWaiters.delete(done);
        resolve(this.deps.transport.connected());
      };
      const timer = setTimeout(done, ms);
      this.onlineWaiters.add(done);
    });
  }

  // ---- commands (commands.ts does the work) ---------------------------------------------------

  private onCommand(payload: Uint8Array): void {
    let command: DeviceCommand;
    try {
      command = decodeDeviceMessage('commands', payload);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'malformed command ignored');
      void this.reporting
        .event('log', { deploymentId: null, reason: toErrorReport(err) }, false)
        .catch(() => undefined);
      return;
    }
    this.enqueue(() => this.commandHandler.handle(command));
  }

  /** Commands run one at a time, never concurrently with a state transition they would race. */
  private enqueue(work: () => Promise<void>): Promise<void> {
    const queued = this.commands.then(work).catch((err) => {
      if (isKilled(err)) return this.die();
      this.log.error({ err: (err as Error).message }, 'command failed');
    });
    this.commands = queued;
    return queued;
  }

  /** What the command handler may read and do (commands.ts). */
  private commandContext() {
    const agent = this;
    const deps = this.deps;
    return {
      get record() {
        return agent.record;
      },
      get root() {
        return agent.trustedRoot;
      },
      get bootedSlot() {
        return agent.booted;
      },
      config: this.config,
      limits: this.limits,
      log: this.log,
      clock: deps.clock,
      io: {
        fetcher: deps.fetcher,
        ...(deps.rootSource ? { rootSource: deps.rootSource } : {}),
      },
      files: this.files,
      reporting: this.reporting,
      get stopped() {
        return agent.stopped;
      },
      get deploymentSignal() {
        return agent.deploymentAbort.signal;
      },
      rememberCommand: (commandId: string) =>
        this.keeper.remember((record) => {
          record.recentCommands = [...record.recentCommands, commandId].slice(-16);
        }),
      checkpoint: (patch: (deployment: Deployment) => void) => this.keeper.checkpoint(patch),
      refreshTrust: (source: RootSource | null) => this.refreshTrust(source),
      begin: (deployment: Deployment) => this.begin(deployment),
      cancelDeployment: (reason: AgentError) => this.deploymentAbort.abort(reason),
      rebootOnRequest: async () => {
        await this.reporting.event('rebooting', { deploymentId: null }, true);
        await this.reporting.reporter.flush();
        await deps.reboot.reboot('requested by the server');
        this.halt();
      },
    };
  }

  /** Persist, then act: the offer-accepted / local-install report is the Offered step's first work. */
  private async begin(deployment: Deployment): Promise<void> {
    await this.transition('offer', undefined, (record) => {
      record.deployment = deployment;
      record.lastError = null;
      record.runs = { Offered: 0 };
    });
    this.kick();
  }

  /**
   * A local install (USB stick): the same checks as an offer minus the offer itself, then the same
   * state machine. Resolves with the deployment id when the machine rests (halted for the reboot,
   * or back in Idle); rejects when the install is refused (busy, stranded, bad signature…).
   */
  async installLocal(bundle: LocalBundle): Promise<string> {
    // enqueue() logs and swallows a command's failure; a local install must surface its refusal.
    let refused: unknown = null;
    let id = '';
    await this.enqueue(async () => {
      try {
        id = await this.commandHandler.beginLocal(bundle);
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

  /** A local install refused before the state machine took it: the server hears of it when next online. */
  async reportRefusedInstall(file: string, err: unknown): Promise<void> {
    await this.reporting.event(
      'local-install',
      { deploymentId: null, reason: toErrorReport(err), detail: { file } },
      true,
    );
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

  /** Hashes the active slot against its release manifest (drift.ts); null when not applicable. */
  async checkDrift(): Promise<DriftResult | null> {
    const record = this.record;
    if (record.state !== 'Idle' || this.booted !== record.committedSlot) return null;
    const content = record.slots[this.booted];
    if (!content?.releaseFile) return null;
    return checkSlotDrift({
      slots: this.deps.slots,
      slot: this.booted,
      manifest: await this.files.loadRelease(content.releaseFile),
      readBlockBytes: this.limits.readBlockBytes,
      signal: this.lifetime.signal,
      report: (fields) => this.reporting.event('drift', fields, true),
    });
  }
}
