import { randomBytes } from 'node:crypto';
import type { DeviceCommand, DeviceEventMessage } from '@flotilla/protocol';
import type { Logger } from 'pino';
import { ServerError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { ServerLimits } from '../limits.js';
import { type Finished, UpdateOutcomes } from '../metrics/update-outcomes.js';
import type { Metrics } from '../metrics.js';
import type { DeviceTransport } from '../mqtt/transport.js';
import {
  abortRollout,
  applyDecisions,
  applyDeviceEvent,
  approvePhase,
  compareVersions,
  type Decision,
  type DeviceSnapshot,
  decide,
  deliverableTargets,
  initialRuntime,
  matchesTarget,
  normalizePolicy,
  pauseRollout,
  phaseAwaitingApproval,
  phaseSizes,
  type RolloutPolicy,
  type RolloutRuntime,
  type RolloutSnapshot,
  type RolloutSummary,
  resumeRollout,
  summarize,
} from '../rollout/index.js';
import { inBackground } from '../store/background.js';
import type { AuditNote } from '../store/repos/audit.js';
import { type DeploymentRow, ROLLBACK_SUFFIX } from '../store/repos/deployments.js';
import type { Release } from '../store/repos/releases.js';
import type { RolloutRow } from '../store/repos/rollouts.js';
import type { Store } from '../store/store.js';
import type { DeltaMemo, OfferBuilder } from './offers.js';

/** Engine milestones worth a line in the audit log (per-device decisions are in the deployments). */
export const AUDITED: ReadonlySet<Decision['type']> = new Set<Decision['type']>([
  'rollout-started',
  'phase-started',
  'wait-approval',
  'phase-succeeded',
  'pause',
  'complete',
  'fail',
  'wait-window',
  'stop-waiting',
]);

/**
 * A pass costs O(fleet) (snapshot of every accepted device and every deployment record): at
 * 10,000 devices ~0.3 s. Event-driven and timed passes of one rollout therefore wait this many
 * times the last pass's duration after it, so passes take at most ~1/(1+N) of the event loop and
 * device reports, downloads and the API keep being served; the next pass sees every event since.
 */
const PASS_GAP_FACTOR = 3;
/** A device gets at most one refreshed offer (fresh artifact URLs) per deployment this often. */
const REFRESH_MIN_INTERVAL_MS = 5000;

/** How many devices a rollout would take now, and each phase's share (see `preview`). */
export interface RolloutPreview {
  release: string;
  devices: number;
  online: number;
  /** Targeted devices running a newer version (taken down only with `allowDowngrade`). */
  downgrades: number;
  membership: 'static' | 'dynamic';
  phases: { name: string; devices: number }[];
}

/** Something to send once the transaction that decided it committed. */
type Outbox = { deviceId: string; command: DeviceCommand }[];

/** A snapshot whose deployment records are the store's rows (with their ids): what a pass writes back. */
type StoredSnapshot = Omit<RolloutSnapshot, 'deployments'> & {
  readonly deployments: readonly DeploymentRow[];
};

/**
 * Drives the pure rollout engine: builds the snapshot from the store, runs `decide`, applies the
 * decisions and the resulting deployment records in one transaction, then sends the offers and
 * cancels it decided. Runs on device events (debounced) and on a timer. An offer lost with the
 * broker (a crash between commit and delivery) is healed by re-sending the offers of deployments
 * still `offered` when the device can receive commands again (subscribed after it connects) and,
 * for an external broker, on start; devices treat a repeated offer of the same deployment as one.
 */
export class RolloutRunner {
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private pending: NodeJS.Immediate | null = null;
  private stopped = false;
  /** When each rollout's last pass ended and what it cost (ms, performance.now clock). */
  private readonly lastPass = new Map<string, { end: number; cost: number }>();
  private readonly deferred = new Map<string, NodeJS.Timeout>();
  private readonly outcomes: UpdateOutcomes;
  private readonly releaseVersions = new Map<string, string>();
  /** The pass of each rollout in progress: passes of one rollout run one after the other. */
  private readonly running = new Map<string, Promise<Decision[]>>();
  /**
   * Queues deltas from the images the targeted devices run, through `store` (set by the delta
   * service); returns how many were new. Builds start at `startDeltas()`, after the commit.
   */
  wantDeltas: ((from: string[], toImageSha256: string, store: Store) => Promise<number>) | null = null;
  startDeltas: (() => Promise<void>) | null = null;
  /** True while deltas this rollout's first offers could use are still being built. */
  deltasPending: ((store: Store, from: string[], toImageSha256: string) => Promise<boolean>) | null = null;

  constructor(
    private readonly store: Store,
    private readonly transport: () => DeviceTransport | null,
    private readonly offers: OfferBuilder,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly limits: ServerLimits & { deltaWaitMs?: number },
    private readonly clock: () => number = Date.now,
  ) {
    this.outcomes = new UpdateOutcomes(store, metrics);
  }

  /**
   * Checked at the start of every pass, inside its transaction: throws when this node no longer
   * holds the engine lease, so a node that lost it cannot write a pass over the new holder's.
   */
  fence: ((tx: Store) => Promise<void>) | null = null;

  /** Runs passes: on a timer, on device events and operators' actions (the engine's holder). */
  start(): void {
    this.stopped = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(
      () => inBackground(this.log, 'rollout timer', this.tickAll()),
      this.limits.rolloutTickMs,
    );
    this.timer.unref();
    inBackground(this.log, 'offer resend', this.resendOffered());
    inBackground(this.log, 'rollout timer', this.tickAll());
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearImmediate(this.pending);
    for (const timer of this.deferred.values()) clearTimeout(timer);
    this.deferred.clear();
    this.timer = null;
    this.pending = null;
  }

  async create(
    input: { name?: string; release: string; policy: unknown },
    actor: string,
  ): Promise<RolloutRow> {
    const policy = normalizePolicy(input.policy);
    const release = await this.store.releases.get(input.release);
    if (!release) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${input.release}`);
    const downgrades = this.checkDeliverable(policy, release, await this.fleet(this.store, () => false));
    const now = this.clock();
    const id = `ro_${randomBytes(8).toString('hex')}`;
    await this.store.tx(async (tx) => {
      if (policy.allowDowngrade)
        await tx.audit.record(
          actor,
          'rollout.allow-downgrade',
          id,
          { release: release.id, reason: policy.allowDowngrade.reason, devices: downgrades },
          now,
        );
      await tx.rollouts.insert({
        id,
        name: input.name ?? `${release.version} rollout`,
        releaseId: release.id,
        policy,
        runtime: initialRuntime(policy),
        createdBy: actor,
        now,
      });
      await tx.audit.record(actor, 'rollout.create', id, { release: release.id, policy }, now);
    });
    const row = (await this.store.rollouts.get(id))!;
    if ((await this.requestDeltas(this.store, row)) > 0) await this.startDeltas?.();
    this.bus.emit('rollout.created', { rolloutId: id, release: release.id });
    this.schedule(id);
    return row;
  }

  /**
   * What `create` would start with, without storing anything: the same checks (so the same
   * refusals), the devices the engine's own selection takes now and how many each phase gets.
   * Phase sizes follow `phaseSizes` exactly; a dynamic target can grow after the start.
   */
  async preview(input: { release: string; policy: unknown }): Promise<RolloutPreview> {
    const policy = normalizePolicy(input.policy);
    const release = await this.store.releases.get(input.release);
    if (!release) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${input.release}`);
    // One read of the fleet serves the checks and the count (it is the cost at 100,000 devices).
    const fleet = await this.fleet(this.store, () => false);
    const downgrades = this.checkDeliverable(policy, release, fleet);
    const ref = {
      version: release.version,
      compatible: release.compatible,
      securityVersion: release.securityVersion,
    };
    const devices = deliverableTargets(policy, ref, fleet);
    const online = devices.filter((d) => d.online).length;
    return {
      release: release.version,
      devices: devices.length,
      online,
      downgrades,
      membership: policy.target.membership,
      phases: phaseSizes(policy, devices.length).map((size, i) => ({
        name: policy.phases[i]!.name ?? `phase ${i + 1}`,
        devices: size,
      })),
    };
  }

  /**
   * Refuses what must not be rolled out, before anything is stored: a recovery release (devices
   * refuse it from a server), a release below a targeted device's security floor (refused on the
   * device, downgrade flag or not), and a downgrade of targeted devices unless the policy names a
   * reason in `allowDowngrade`. Returns how many targeted devices the rollout takes down.
   */
  private checkDeliverable(policy: RolloutPolicy, release: Release, fleet: DeviceSnapshot[]): number {
    if (release.kind !== 'release')
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_ROLLOUT_RECOVERY',
        `release ${release.version} is of kind ${release.kind}`,
      );
    const ref = { version: release.version, compatible: release.compatible };
    const targeted = fleet.filter((d) => matchesTarget(policy.target, ref, d));
    const name = (ids: string[]) =>
      `${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ` and ${ids.length - 5} more` : ''}`;
    const belowFloor = targeted.filter((d) => (d.securityVersion ?? 0) > release.securityVersion);
    if (belowFloor.length > 0)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_ROLLOUT_SECURITY_FLOOR',
        `release ${release.version} has securityVersion ${release.securityVersion}; ${name(belowFloor.map((d) => d.id))} ${belowFloor.length === 1 ? 'has' : 'have'} a higher floor`,
      );
    const newer = targeted.filter(
      (d) => d.currentVersion !== null && compareVersions(d.currentVersion, release.version) > 0,
    );
    if (newer.length > 0 && !policy.allowDowngrade)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_ROLLOUT_DOWNGRADE',
        `${name(newer.map((d) => `${d.id} (${d.currentVersion})`))} ${newer.length === 1 ? 'runs' : 'run'} a newer version than ${release.version}`,
      );
    return newer.length;
  }

  /** Operator actions: change the runtime, audit, re-run. */
  async act(
    id: string,
    action: 'pause' | 'resume' | 'abort' | 'approve',
    actor: string,
    opts: { phase?: number; rollback?: boolean; note?: string } = {},
  ): Promise<RolloutRow> {
    const now = this.clock();
    await this.store.tx(async (tx) => {
      const row = await tx.rollouts.get(id);
      if (!row) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `rollout ${id}`);
      let nextRuntime: RolloutRuntime;
      switch (action) {
        case 'pause':
          nextRuntime = pauseRollout(row.runtime, now, actor, opts.note ?? null);
          break;
        case 'resume':
          nextRuntime = resumeRollout(row.policy, await this.snapshot(tx, row));
          break;
        case 'abort':
          nextRuntime = abortRollout(row.policy, row.runtime, now, { rollback: opts.rollback === true });
          break;
        case 'approve': {
          const phase = opts.phase ?? phaseAwaitingApproval(row.runtime);
          if (phase === null || phase === undefined)
            throw new ServerError(
              'FLOTILLA_ERR_SERVER_ROLLOUT_STATE',
              'no phase is waiting for approval; name one',
            );
          nextRuntime = approvePhase(row.policy, row.runtime, phase, now, actor);
          break;
        }
      }
      await tx.rollouts.setRuntime(id, nextRuntime, now);
      await tx.audit.record(actor, `rollout.${action}`, id, { ...opts }, now);
    });
    if (action === 'pause') this.metrics.rolloutPauses.inc({ reason: 'operator' });
    this.bus.emit('rollout.updated', { rolloutId: id, action });
    await this.tick(id);
    return (await this.store.rollouts.get(id))!;
  }

  async summary(id: string): Promise<RolloutSummary> {
    const row = await this.store.rollouts.get(id);
    if (!row) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `rollout ${id}`);
    return summarize(row.policy, await this.snapshot(this.store, row), this.clock());
  }

  /**
   * Summaries of several rollouts (the list route): the fleet is read once and shared, so the
   * cost is one pass over the accepted devices plus each listed rollout's own deployment records.
   * `summarize` reads only which devices are present, never `busy`, so the shared list leaves it false.
   */
  async summaries(rows: readonly RolloutRow[]): Promise<Map<string, RolloutSummary>> {
    const out = new Map<string, RolloutSummary>();
    if (rows.length === 0) return out;
    const devices = await this.fleet(this.store, () => false);
    const now = this.clock();
    for (const row of rows)
      out.set(row.id, summarize(row.policy, await this.snapshotWith(this.store, row, devices), now));
    return out;
  }

  /**
   * Inside the report transaction: moves the deployments these new events name (each only by its
   * own device), in arrival order. The deployments are read once, each event applied in memory to
   * the record as the events before it left it (the same records as reading it before each, since
   * nothing else writes deployments in this transaction meanwhile; a device's whole install
   * sequence arriving in one batch then costs no extra round trips), and the changed ones written
   * in one statement. Returns the bookkeeping (outcome metrics, the rollouts to re-run) for after
   * the commit: a transaction or run undone leaves nothing counted.
   */
  async applyEvents(
    tx: Store,
    events: readonly { deviceId: string; event: DeviceEventMessage }[],
    now: number,
  ): Promise<(() => void) | undefined> {
    const named = events.flatMap(({ deviceId, event }) => {
      if (!event.deploymentId) return [];
      const rollback = event.deploymentId.endsWith(ROLLBACK_SUFFIX);
      const depId = rollback ? event.deploymentId.slice(0, -ROLLBACK_SUFFIX.length) : event.deploymentId;
      return [{ deviceId, event, rollback, depId }];
    });
    if (named.length === 0) return undefined;
    const current = await tx.deployments.getMany(named.map((n) => n.depId));
    const changed = new Set<string>();
    // Only what the bookkeeping needs is kept until the commit (the records would be, batch-long).
    const ended: Finished[] = [];
    const rollouts = new Set<string>();
    for (const { deviceId, event, rollback, depId } of named) {
      const dep = current.get(depId);
      if (!dep || dep.deviceId !== deviceId) continue;
      // An event of the forward offer must not move the rollback record, nor the other way round.
      if (rollback !== (dep.rollback !== null)) continue;
      const reason = event.reason ? `${event.reason.code}: ${event.reason.message}` : null;
      const release = await this.releaseVersionOf(tx, dep.rolloutId);
      if (release === null) continue;
      const next = applyDeviceEvent(
        dep,
        { kind: event.kind, at: now, reason, version: event.version },
        release,
      );
      if (!next) continue;
      const after = { ...dep, ...next };
      current.set(depId, after);
      changed.add(depId);
      const f = rollback ? null : UpdateOutcomes.finished(dep, after, now);
      if (f) ended.push(f);
      rollouts.add(dep.rolloutId);
    }
    if (changed.size === 0) return undefined;
    await tx.deployments.saveMany([...changed].map((id) => current.get(id)!));
    return () => {
      for (const f of ended) this.outcomes.hold(f);
      for (const id of rollouts) this.dirty.add(id);
    };
  }

  /** The version a rollout delivers (fixed for its life, so remembered: this runs per device event). */
  private async releaseVersionOf(tx: Store, rolloutId: string): Promise<string | null> {
    const known = this.releaseVersions.get(rolloutId);
    if (known !== undefined) return known;
    const row = await tx.rollouts.get(rolloutId);
    const version = row ? ((await tx.releases.get(row.releaseId))?.version ?? null) : null;
    if (version !== null) this.releaseVersions.set(rolloutId, version);
    return version;
  }

  /** After reports committed: re-run the rollouts they touched. */
  afterReports(): void {
    if (this.dirty.size > 0) this.kick();
    inBackground(this.log, 'update outcome metrics', this.outcomes.flush());
  }

  schedule(id: string): void {
    this.dirty.add(id);
    this.kick();
  }

  private kick(): void {
    if (this.pending || this.stopped) return;
    this.pending = setImmediate(() => {
      this.pending = null;
      const ids = [...this.dirty];
      this.dirty.clear();
      for (const id of ids) this.tickSoon(id);
    });
  }

  async tickAll(): Promise<void> {
    for (const r of await this.store.rollouts.active()) this.tickSoon(r.id);
  }

  /** A pass now, or once the gap after the last one is over (at most one waiting per rollout). */
  private tickSoon(id: string): void {
    if (this.stopped || this.deferred.has(id)) return;
    const last = this.lastPass.get(id);
    const wait = last ? last.end + PASS_GAP_FACTOR * last.cost - performance.now() : 0;
    if (wait <= 0) {
      void this.tick(id);
      return;
    }
    const timer = setTimeout(() => {
      this.deferred.delete(id);
      void this.tick(id);
    }, Math.ceil(wait));
    timer.unref();
    this.deferred.set(id, timer);
  }

  /**
   * One engine pass for one rollout, applied atomically; after the one in progress, if any.
   * Never rejects: a failed pass is logged and runs again on the next event or tick.
   */
  tick(id: string): Promise<Decision[]> {
    const before = this.running.get(id);
    const pass: Promise<Decision[]> = (before ? before.then(() => this.pass(id)) : this.pass(id)).finally(
      () => {
        if (this.running.get(id) === pass) this.running.delete(id);
      },
    );
    this.running.set(id, pass);
    return pass;
  }

  private async pass(id: string): Promise<Decision[]> {
    if (this.stopped) return [];
    const now = this.clock();
    const started = performance.now();
    const outbox: Outbox = [];
    let decisions: Decision[] = [];
    let deltasQueued = 0;
    try {
      await this.store.tx(async (tx) => {
        if (this.fence) await this.fence(tx);
        const row = await tx.rollouts.get(id);
        // An aborted rollout still runs: it cancels pending devices and may roll devices back.
        if (!row || row.status === 'completed' || row.status === 'failed') return;
        const snap = await this.snapshot(tx, row);
        if (row.runtime.startedAt === null && (await this.waitForDeltas(tx, row, snap, now))) return;
        decisions = decide(row.policy, snap, now);
        if (decisions.length === 0) return;
        const next = applyDecisions(snap, decisions, now);
        deltasQueued = await this.persist(tx, row, snap, next, decisions, now, outbox);
      });
    } catch (err) {
      this.log.error({ err, rolloutId: id }, 'rollout pass failed; it will run again');
      return [];
    } finally {
      const end = performance.now();
      this.lastPass.set(id, { end, cost: end - started });
    }
    if (deltasQueued > 0 && this.startDeltas) inBackground(this.log, 'delta queue', this.startDeltas());
    inBackground(this.log, 'update outcome metrics', this.outcomes.decided(id, decisions));
    if (decisions.length > 0)
      this.bus.emit('rollout.updated', { rolloutId: id, decisions: decisions.length });
    void this.send(outbox);
    return decisions;
  }

  private async waitForDeltas(
    tx: Store,
    row: RolloutRow,
    snap: RolloutSnapshot,
    now: number,
  ): Promise<boolean> {
    const wait = this.limits.deltaWaitMs ?? 0;
    if (!this.deltasPending || wait <= 0 || now - row.created > wait) return false;
    const release = await tx.releases.get(row.releaseId);
    if (!release) return false;
    const from = [...new Set(snap.devices.map((d) => d.currentImageSha256).filter((s): s is string => !!s))];
    return this.deltasPending(tx, from, release.imageSha256);
  }

  /**
   * Writes a pass: the runtime, the deployment records it changed and created, the audit lines of
   * its milestones, in a few multi-row statements (each a round trip on PostgreSQL); collects the
   * offers and cancels to send after the commit.
   */
  private async persist(
    tx: Store,
    row: RolloutRow,
    before: StoredSnapshot,
    after: RolloutSnapshot,
    decisions: Decision[],
    now: number,
    outbox: Outbox,
  ): Promise<number> {
    await tx.rollouts.setRuntime(row.id, after.runtime, now);
    const existing = await this.writeRecords(tx, row.id, before, after, now);
    const release = (await tx.releases.get(row.releaseId))!;
    // Read once per pass, not per offer: rollback targets, each device's image, each delta.
    const targets = new Map<string, Release | undefined>();
    const images = new Map(before.devices.map((d) => [d.id, d.currentImageSha256]));
    const deltas: DeltaMemo = new Map();
    const audited: AuditNote[] = [];
    for (const d of decisions) {
      if (d.type === 'offer' || d.type === 'rollback-offer') {
        const dep = existing.get(d.deviceId)!;
        let rel: Release | undefined = release;
        if (d.type === 'rollback-offer') {
          if (!targets.has(d.toVersion)) targets.set(d.toVersion, await tx.releases.get(d.toVersion));
          rel = targets.get(d.toVersion);
        }
        if (!rel) {
          this.log.warn(
            { deviceId: d.deviceId, version: d.type === 'rollback-offer' ? d.toVersion : '' },
            'no release to roll back to',
          );
          continue;
        }
        // A device the snapshot lacks (no longer accepted) is read alone, as before.
        const image = images.has(d.deviceId)
          ? (images.get(d.deviceId) ?? null)
          : ((await tx.devices.get(d.deviceId))?.imageSha256 ?? null);
        const deploymentId = d.type === 'offer' ? dep.id : `${dep.id}${ROLLBACK_SUFFIX}`;
        const offer = await this.offers.build(
          {
            deploymentId,
            ...(d.type === 'offer' ? { attempt: d.attempt } : {}),
            deviceId: d.deviceId,
            release: rel,
            deviceImageSha256: image,
            now,
          },
          tx,
          deltas,
        );
        outbox.push({ deviceId: d.deviceId, command: this.offers.command(offer) });
      } else if (d.type === 'cancel' && d.notify) {
        outbox.push({ deviceId: d.deviceId, command: this.offers.cancel(existing.get(d.deviceId)!.id) });
      } else if (AUDITED.has(d.type)) {
        audited.push({
          actor: 'rollout-engine',
          action: `rollout.${d.type}`,
          target: row.id,
          detail: { ...d },
        });
      }
    }
    await tx.audit.recordMany(audited, now);
    // Queued in this transaction (with the assignments); built after the commit.
    return decisions.some((d) => d.type === 'assign') ? this.requestDeltas(tx, row, before.devices) : 0;
  }

  /**
   * Stores the records the pass changed: the new ones created as they are, the others saved, in
   * batches. Returns every deployment of the rollout by device.
   */
  private async writeRecords(
    tx: Store,
    rolloutId: string,
    before: StoredSnapshot,
    after: RolloutSnapshot,
    now: number,
  ): Promise<Map<string, DeploymentRow>> {
    // The snapshot read them in this transaction: not read a second time (a full read at scale).
    const prev = new Map(before.deployments.map((d) => [d.deviceId, d]));
    const existing = new Map(prev);
    const changed = after.deployments.filter((rec) => prev.get(rec.deviceId) !== rec);
    const created = new Set<string>();
    for (const dep of await tx.deployments.createMany(
      rolloutId,
      changed.filter((rec) => !prev.has(rec.deviceId)),
      now,
    )) {
      existing.set(dep.deviceId, dep);
      created.add(dep.deviceId);
    }
    const saves: DeploymentRow[] = [];
    for (const rec of changed) {
      if (created.has(rec.deviceId)) continue;
      let dep = existing.get(rec.deviceId);
      if (!dep) {
        // New to the snapshot, but another writer stored it first (createMany left that row):
        // read as an assignment would create it, then given this record's values.
        const depId = await tx.deployments.assign(rolloutId, rec.deviceId, rec.phase, rec.fromVersion, now);
        dep = (await tx.deployments.get(depId))!;
        existing.set(rec.deviceId, dep);
      }
      saves.push({ ...dep, ...rec });
    }
    await tx.deployments.saveMany(saves);
    return existing;
  }

  private async send(outbox: Outbox): Promise<void> {
    const transport = this.transport();
    if (!transport) return;
    for (const { deviceId, command } of outbox) {
      try {
        await transport.publishCommand(deviceId, command);
        if (command.type === 'offer') this.metrics.offersSent.inc();
      } catch (err) {
        // The deployment stays offered: the engine's timeout and the resend on reconnect cover it.
        this.log.warn({ err, deviceId }, 'command not published');
      }
    }
  }

  /** Re-sends a fresh offer for every deployment of this device still waiting in `offered`. */
  async resendFor(deviceId: string): Promise<void> {
    const now = this.clock();
    const outbox: Outbox = [];
    for (const dep of await this.store.deployments.forDevice(deviceId))
      await this.collectResend(dep, now, outbox);
    void this.send(outbox);
  }

  /** Last refresh per deployment: one device cannot make the server sign offers in a loop. */
  private readonly refreshedAt = new Map<string, number>();

  /**
   * A device whose signed artifact URL expired mid-download asks again (`offer-refresh` event): it
   * gets a fresh offer, with fresh URLs, for the same deployment while that is still offered or
   * downloading. At most one per deployment per `REFRESH_MIN_INTERVAL_MS`.
   */
  async refreshOffer(deviceId: string, deploymentId: string): Promise<void> {
    const rollback = deploymentId.endsWith(ROLLBACK_SUFFIX);
    const dep = await this.store.deployments.get(
      rollback ? deploymentId.slice(0, -ROLLBACK_SUFFIX.length) : deploymentId,
    );
    if (!dep || dep.deviceId !== deviceId) return;
    const state = rollback ? dep.rollback?.state : dep.state;
    if (state !== 'offered' && state !== 'downloading') return;
    const row = await this.store.rollouts.get(dep.rolloutId);
    if (!row || row.status === 'completed' || (!rollback && row.status === 'aborted')) return;
    const now = this.clock();
    const last = this.refreshedAt.get(deploymentId);
    if (last !== undefined && now - last < REFRESH_MIN_INTERVAL_MS) return;
    if (this.refreshedAt.size >= 10_000) this.refreshedAt.clear();
    this.refreshedAt.set(deploymentId, now);
    const rel = await this.store.releases.get(rollback ? dep.rollback!.toVersion : row.releaseId);
    if (!rel) return;
    const offer = await this.offers.build({
      deploymentId,
      ...(rollback ? {} : { attempt: dep.attempts }),
      deviceId,
      release: rel,
      deviceImageSha256: (await this.store.devices.get(deviceId))?.imageSha256 ?? null,
      now,
    });
    void this.send([{ deviceId, command: this.offers.command(offer) }]);
  }

  private async resendOffered(): Promise<void> {
    // One embedded broker starts with no sessions: each device gets its offers when it subscribes.
    // Sessions in Redis (several nodes) or an external broker outlive the engine's node: a device
    // there may never reconnect, and the offers the last engine committed may never have left it.
    const transport = this.transport();
    if (transport?.kind === 'embedded' && !transport.sharedPresence) return;
    const now = this.clock();
    const outbox: Outbox = [];
    for (const r of await this.store.rollouts.active())
      for (const dep of await this.store.deployments.forRollout(r.id))
        await this.collectResend(dep, now, outbox);
    void this.send(outbox);
  }

  private async collectResend(dep: DeploymentRow, now: number, outbox: Outbox): Promise<void> {
    const row = await this.store.rollouts.get(dep.rolloutId);
    if (!row || row.status === 'completed' || row.status === 'failed') return;
    const rollback = dep.rollback?.state === 'offered';
    if (!rollback && (dep.state !== 'offered' || row.status === 'aborted')) return;
    const rel = await this.store.releases.get(rollback ? dep.rollback!.toVersion : row.releaseId);
    if (!rel) return;
    const device = await this.store.devices.get(dep.deviceId);
    const offer = await this.offers.build({
      deploymentId: rollback ? `${dep.id}${ROLLBACK_SUFFIX}` : dep.id,
      ...(rollback ? {} : { attempt: dep.attempts }),
      deviceId: dep.deviceId,
      release: rel,
      deviceImageSha256: device?.imageSha256 ?? null,
      now,
    });
    outbox.push({ deviceId: dep.deviceId, command: this.offers.command(offer) });
  }

  /**
   * Queues (through `s`) the deltas this rollout's devices could use; returns how many were new.
   * `devices`: the fleet as a pass just read it (in its transaction), else read here.
   */
  private async requestDeltas(
    s: Store,
    row: RolloutRow,
    devices?: readonly DeviceSnapshot[],
  ): Promise<number> {
    if (!this.wantDeltas) return 0;
    const release = await s.releases.get(row.releaseId);
    if (!release) return 0;
    const from = new Set<string>();
    for (const d of devices ?? (await this.snapshot(s, row)).devices)
      if (d.currentImageSha256 && d.currentImageSha256 !== release.imageSha256)
        from.add(d.currentImageSha256);
    return this.wantDeltas([...from], release.imageSha256, s);
  }

  /** `s`: the store to read (inside a pass, its transaction's). */
  async snapshot(s: Store, row: RolloutRow): Promise<StoredSnapshot> {
    const busy = await s.deployments.busyDevices(row.id);
    return this.snapshotWith(s, row, await this.fleet(s, (id) => busy.has(id)));
  }

  private async snapshotWith(s: Store, row: RolloutRow, devices: DeviceSnapshot[]): Promise<StoredSnapshot> {
    const release = await s.releases.get(row.releaseId);
    return {
      rolloutId: row.id,
      release: {
        version: release?.version ?? row.releaseId,
        compatible: release?.compatible ?? [],
        securityVersion: release?.securityVersion ?? 0,
      },
      runtime: row.runtime,
      devices,
      deployments: await s.deployments.forRollout(row.id),
    };
  }

  /** The accepted devices as the engine sees them. */
  private async fleet(s: Store, busy: (id: string) => boolean): Promise<DeviceSnapshot[]> {
    const transport = this.transport();
    const staleBefore = this.clock() - this.limits.offlineAfterMs;
    return (await s.devices.allAccepted()).map((d) => ({
      id: d.id,
      hardware: d.hardware ?? '',
      tags: d.tags,
      group: d.group,
      channel: d.channel,
      currentVersion: d.version,
      currentImageSha256: d.imageSha256,
      online:
        transport?.kind === 'embedded' && !transport.sharedPresence
          ? transport.isConnected(d.id)
          : d.online &&
            (transport?.sharedPresence === true || (d.lastSeen !== null && d.lastSeen >= staleBefore)),
      lastSeen: d.lastSeen,
      busy: busy(d.id),
      securityVersion: d.securityVersion,
    }));
  }

  async policyOf(id: string): Promise<RolloutPolicy | undefined> {
    return (await this.store.rollouts.get(id))?.policy;
  }
}
