import {
  checkInstallable,
  type DeviceCommand,
  isFlotillaError,
  type ReleaseManifest,
  type RootMetadata,
  type Slot,
  verifyOffer,
  verifyRelease,
} from '@flotilla/protocol';
import type { Clock } from '../clock.js';
import { AgentError, type ErrorReport, isKilled, toErrorReport } from '../errors.js';
import type { AgentLimits } from '../limits.js';
import type { Logger } from '../logger.js';
import { type AgentRecord, type Deployment, otherSlot } from '../state/record.js';
import { HttpRootSource, type RootSource } from '../trust/root-source.js';
import type { DataFiles } from './data-files.js';
import type { AgentConfig, AgentDeps } from './deps.js';
import type { AgentReporting } from './reporting.js';

/** What the command handler may read and do: the agent hands it this, nothing more. */
export interface CommandContext {
  readonly record: Readonly<AgentRecord>;
  /** The trusted root metadata as of now. */
  readonly root: RootMetadata;
  readonly bootedSlot: Slot;
  readonly config: AgentConfig;
  readonly limits: AgentLimits;
  readonly log: Logger;
  readonly clock: Clock;
  readonly io: Pick<AgentDeps, 'rootSource' | 'fetcher'>;
  readonly files: DataFiles;
  readonly reporting: AgentReporting;
  readonly stopped: boolean;
  /** Aborted when the running deployment is cancelled or the agent stops. */
  readonly deploymentSignal: AbortSignal;
  /** Keeps a command id in memory (QoS 1 redelivery is ignored). */
  rememberCommand(commandId: string): void;
  checkpoint(patch: (deployment: Deployment) => void): Promise<void>;
  refreshTrust(source: RootSource | null): Promise<RootMetadata>;
  /** Persists the new deployment (Idle → Offered) and starts the state machine. */
  begin(deployment: Deployment): Promise<void>;
  cancelDeployment(reason: AgentError): void;
  /** The server asked for a reboot while idle: report, reboot, halt. */
  rebootOnRequest(): Promise<void>;
}

type VerifiedOffer = ReturnType<typeof verifyOffer>;

/** States in which a cancel command stops the deployment (after them the new slot is armed). */
const CANCELLABLE = ['Offered', 'Downloading', 'Installing', 'Installed'];

/** A local bundle's parts: the signed manifest and where the image lies in the file. */
export interface LocalBundle {
  path: string;
  manifest: unknown;
  imageOffset: number;
  imageSize: number;
}

/**
 * The server's commands (offer, cancel, reboot request) and the local install: everything that
 * starts a deployment. Offers are verified completely before anything is stored or downloaded.
 */
export class CommandHandler {
  /** Woken when a fresh offer for the running deployment replaced its artifact URLs. */
  private readonly urlWaiters = new Set<() => void>();

  constructor(private readonly context: CommandContext) {}

  async handle(command: DeviceCommand): Promise<void> {
    const context = this.context;
    if (context.stopped) return;
    if (context.record.recentCommands.includes(command.commandId)) return; // QoS 1 redelivery
    context.rememberCommand(command.commandId);
    if (command.type === 'offer') return this.acceptOffer(command.offer, command.rootUrl);
    if (command.type === 'cancel') {
      const deployment = context.record.deployment;
      if (deployment && deployment.id === command.deploymentId && CANCELLABLE.includes(context.record.state))
        context.cancelDeployment(
          new AgentError('FLOTILLA_ERR_AGENT_CANCELLED', `by command ${command.commandId}`),
        );
      return;
    }
    if (command.type === 'reboot-request' && context.record.state === 'Idle') await context.rebootOnRequest();
  }

  /**
   * A signed artifact URL expired mid-download: ask the server for a fresh offer of the same
   * deployment (`offer-refresh`) and wait, bounded, until it arrives and was verified. Returns the
   * new URL; the download then resumes with Range from where it stopped.
   */
  async refreshArtifactUrl(deployment: Deployment, which: 'full' | 'delta'): Promise<string> {
    const { clock, limits, reporting } = this.context;
    const signal = this.context.deploymentSignal;
    const current = () => (which === 'full' ? deployment.full.url : (deployment.delta?.url ?? ''));
    const before = current();
    const wait = new AbortController();
    const onOuter = () => wait.abort(signal.reason);
    signal.addEventListener('abort', onOuter, { once: true });
    const woken = () => wait.abort();
    this.urlWaiters.add(woken);
    try {
      await reporting.event(
        'offer-refresh',
        { deploymentId: deployment.id, version: deployment.version },
        false,
      );
      await clock.sleep(limits.download.urlRefreshTimeoutMs, wait.signal).catch(() => undefined);
    } finally {
      this.urlWaiters.delete(woken);
      signal.removeEventListener('abort', onOuter);
    }
    signal.throwIfAborted();
    if (current() === before)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_URL_EXPIRED',
        `no fresh offer for ${deployment.id} within ${limits.download.urlRefreshTimeoutMs} ms`,
        { component: 'downloader' },
      );
    return current();
  }

  /**
   * A re-sent offer for the deployment under way: verified like any offer, and if it names the
   * same payloads, its (freshly signed) URLs replace the old ones. Anything else is ignored.
   */
  private async refreshFromOffer(envelope: unknown): Promise<void> {
    const { record, config, clock, log, files } = this.context;
    const deployment = record.deployment;
    if (
      !deployment ||
      deployment.origin !== 'server' ||
      (record.state !== 'Offered' && record.state !== 'Downloading')
    )
      return;
    let offer: VerifiedOffer['offer'];
    try {
      offer = verifyOffer(envelope, {
        root: this.context.root,
        now: clock.now(),
        deviceId: config.deviceId,
        device: { hardware: config.hardware, securityVersion: record.securityVersion },
        activeImageSha256: deployment.delta?.fromImageSha256 ?? null,
      }).offer;
    } catch (err) {
      if (!(deployment.deltaRefused && isFlotillaError(err, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH'))) {
        log.warn({ err: (err as Error).message }, 'refreshed offer refused');
        return;
      }
      offer = (envelope as { signed: VerifiedOffer['offer'] }).signed;
    }
    if (offer.full.sha256 !== deployment.full.sha256 || offer.full.size !== deployment.full.size) return;
    deployment.full = { ...deployment.full, url: offer.full.url };
    if (deployment.delta && offer.delta) deployment.delta = { ...deployment.delta, url: offer.delta.url };
    deployment.offerFile = await files.storeOffer(deployment.id, envelope);
    await this.context.checkpoint(() => undefined);
    for (const wake of this.urlWaiters) wake();
  }

  /** Verifies an offer completely before anything is stored or downloaded. */
  async acceptOffer(envelope: unknown, rootUrl?: string): Promise<void> {
    const { record, bootedSlot, config, clock, io, limits, files } = this.context;
    const signed = (envelope as { signed?: { deploymentId?: unknown } })?.signed;
    const claimedId = typeof signed?.deploymentId === 'string' ? signed.deploymentId.slice(0, 64) : null;
    if (record.state !== 'Idle') {
      if (claimedId && claimedId === record.deployment?.id) return this.refreshFromOffer(envelope);
      return this.rejectOffer(
        claimedId,
        new AgentError('FLOTILLA_ERR_AGENT_BUSY', `in state ${record.state}`),
      );
    }
    if (bootedSlot !== record.committedSlot) return this.rejectOffer(claimedId, this.strandedError());
    // Rotate first (TUF): the offer may be signed by keys only a newer root names.
    const source = io.rootSource ?? (rootUrl ? new HttpRootSource(rootUrl, io.fetcher, limits.trust) : null);
    let root: RootMetadata;
    try {
      root = await this.context.refreshTrust(source);
    } catch (err) {
      if (isKilled(err)) throw err;
      return this.rejectOffer(claimedId, err);
    }
    const now = clock.now();
    const active = record.slots[bootedSlot];
    const verification = {
      root,
      now,
      deviceId: config.deviceId,
      device: { hardware: config.hardware, securityVersion: record.securityVersion },
      activeImageSha256: bootedSlot === record.committedSlot ? (active?.imageSha256 ?? null) : null,
    };
    let deltaRefused: ErrorReport | null = null;
    let verified: VerifiedOffer;
    try {
      verified = verifyOffer(envelope, verification);
    } catch (err) {
      // verifyOffer checks the delta base last: everything else already passed.
      if (isFlotillaError(err, 'FLOTILLA_ERR_DELTA_BASE_MISMATCH') && config.deltaFallbackToFull !== false) {
        deltaRefused = toErrorReport(err);
        const offer = (envelope as { signed: VerifiedOffer['offer'] }).signed;
        verified = { offer, release: verifyRelease(offer.release, root, now) };
      } else {
        return this.rejectOffer(claimedId, err);
      }
    }
    const { offer, release, delta } = verified;
    if (isFinishedAttempt(record.lastDeployment, offer)) {
      // A re-send of an attempt this device already ended (the server had not heard the end yet,
      // e.g. across its restart): its outcome is on the way in the outbox; only a retry, with a
      // higher attempt, installs again.
      this.context.log.info(
        { deploymentId: offer.deploymentId, attempt: offer.attempt, outcome: record.lastDeployment?.outcome },
        'offer of a finished attempt ignored',
      );
      return;
    }
    if (release.image.sha256 === active?.imageSha256)
      return this.rejectOffer(
        offer.deploymentId,
        new AgentError('FLOTILLA_ERR_AGENT_ALREADY_INSTALLED', release.version),
      );
    const deployment = await this.newDeployment('server', offer.deploymentId, offer.release, release, {
      url: offer.full.url,
      size: offer.full.size,
      sha256: offer.full.sha256,
    });
    if (offer.attempt !== undefined) deployment.offerAttempt = offer.attempt;
    deployment.offerFile = await files.storeOffer(deployment.id, envelope);
    if (delta && offer.delta && !deltaRefused)
      deployment.delta = {
        url: offer.delta.url,
        size: delta.deltaSize,
        sha256: delta.deltaSha256,
        fromImageSha256: delta.fromImageSha256,
        codec: delta.codec,
      };
    deployment.deltaRefused = deltaRefused;
    await this.context.begin(deployment);
  }

  /** Running an uncommitted slot: installing would overwrite the only known-good one. */
  private strandedError(): AgentError {
    return new AgentError(
      'FLOTILLA_ERR_AGENT_ROLLBACK_PENDING',
      `running slot ${this.context.bootedSlot}, the committed slot is ${this.context.record.committedSlot}`,
    );
  }

  private async rejectOffer(deploymentId: string | null, err: unknown): Promise<void> {
    const reason = toErrorReport(err);
    this.context.log.warn({ deploymentId, code: reason.code }, 'offer rejected');
    await this.context.reporting.event('offer-rejected', { deploymentId, reason }, true);
  }

  /**
   * A local install (USB stick): the same checks as an offer minus the offer itself, then the same
   * state machine. Returns the deployment id; throws when the install is refused.
   */
  async beginLocal(bundle: LocalBundle): Promise<string> {
    const { record, bootedSlot, config, clock } = this.context;
    if (record.state !== 'Idle')
      throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `an update is in state ${record.state}`);
    if (bootedSlot !== record.committedSlot) throw this.strandedError();
    const root = await this.context.refreshTrust(null); // local roots only (offline), final one unexpired
    const now = clock.now();
    const release = verifyRelease(bundle.manifest, root, now, { allowKinds: ['release', 'recovery'] });
    checkInstallable(release, { hardware: config.hardware, securityVersion: record.securityVersion });
    if (bundle.imageSize !== release.image.size)
      throw new AgentError('FLOTILLA_ERR_AGENT_BUNDLE', 'image section size differs from the manifest');
    const id = `local-${release.image.sha256.slice(0, 16)}-${now.getTime()}`;
    const deployment = await this.newDeployment('local', id, bundle.manifest, release, {
      url: new URL(`file://${bundle.path}`).href,
      size: release.image.size,
      sha256: release.image.sha256,
      offset: bundle.imageOffset,
    });
    await this.context.begin(deployment);
    return id;
  }

  private async newDeployment(
    origin: Deployment['origin'],
    id: string,
    releaseEnvelope: unknown,
    release: ReleaseManifest,
    full: Deployment['full'],
  ): Promise<Deployment> {
    const { record, bootedSlot, files } = this.context;
    const attempt = record.lastDeployment?.id === id ? record.lastDeployment.attempt + 1 : 1;
    return {
      id,
      attempt,
      origin,
      version: release.version,
      kind: release.kind,
      imageSha256: release.image.sha256,
      securityVersion: release.securityVersion,
      fromSlot: bootedSlot,
      targetSlot: otherSlot(bootedSlot),
      releaseFile: await files.storeRelease(releaseEnvelope, release),
      offerFile: null,
      method: null,
      full,
      delta: null,
      deltaRefused: null,
      verifiedChunks: 0,
    };
  }
}

/** The offer repeats an attempt of the last deployment that already ended here. */
function isFinishedAttempt(
  last: AgentRecord['lastDeployment'],
  offer: { deploymentId: string; attempt?: number },
) {
  return (
    last !== null &&
    last.id === offer.deploymentId &&
    last.offerAttempt !== undefined &&
    offer.attempt !== undefined &&
    offer.attempt <= last.offerAttempt
  );
}
