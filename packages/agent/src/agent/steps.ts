import { checkInstallable, verifyOffer, verifyRelease } from '@flotilla/protocol';
import { download } from '../download/downloader.js';
import { AgentError, isKilled, toErrorReport } from '../errors.js';
import { ChunkWriter } from '../install/chunk-writer.js';
import { SpoolFile } from '../install/spool.js';
import { hashSlot } from '../slots/hash-slot.js';
import type { AgentState } from '../state/machine.js';
import type { StepContext, StepOutcome } from './step-context.js';

type Step = (context: StepContext) => Promise<StepOutcome>;

/** Events that report progress at most every `progressEveryMs`. */
function throttled(context: StepContext, fn: (done: number) => void): (done: number) => void {
  let last = -Infinity;
  return (done) => {
    const t = context.io.clock.monotonicMs();
    if (t - last < context.limits.download.progressEveryMs) return;
    last = t;
    fn(done);
  };
}

/**
 * The work of each state. Every step is idempotent, because after a power cut the state whose
 * work was interrupted simply runs again (the recovery table in docs/agent.md). A step never
 * picks its successor; it returns an event and the transition table decides.
 */
export const STEPS: Record<AgentState, Step> = {
  async Idle() {
    throw new AgentError('FLOTILLA_ERR_AGENT_INTERNAL', 'Idle has no work');
  },

  /** Re-check the offer (it may have expired while we were down), space, hooks; pick the method. */
  async Offered(context) {
    const deployment = context.deployment;
    await context.milestone(deployment.origin === 'local' ? 'local-install' : 'offer-accepted', {
      detail: {
        targetSlot: deployment.targetSlot,
        origin: deployment.origin,
        deltaRefused: deployment.deltaRefused?.code ?? null,
      },
      ...(deployment.deltaRefused ? { reason: deployment.deltaRefused } : {}),
    });
    // Just verified on receipt; after a restart the offer may have expired meanwhile: check again.
    if (context.resumedFrom === 'Offered') await recheckOffer(context);
    const manifest = await context.loadRelease(deployment.releaseFile);
    const slotSize = await context.io.slots.device(deployment.targetSlot).size();
    if (manifest.image.size > slotSize || manifest.image.size > context.limits.maxImageBytes)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SLOT_TOO_SMALL',
        `image ${manifest.image.size} bytes, slot ${slotSize}`,
      );
    if (manifest.image.chunkSize > context.limits.maxChunkBytes)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SLOT_TOO_SMALL',
        `chunk size ${manifest.image.chunkSize} above the limit`,
      );
    await context.runHooks('before-install');
    const method = deployment.delta ? 'delta' : 'full';
    return {
      event: 'accepted',
      patch: (record) => {
        record.deployment!.method = method;
        record.slots[deployment.targetSlot] = null; // its old contents are about to be overwritten
      },
    };
  },

  /** Full image: straight into the inactive slot, chunk-verified. Delta: into the spool, hash-checked. */
  async Downloading(context) {
    const deployment = context.deployment;
    const manifest = await context.loadRelease(deployment.releaseFile);
    const progress = throttled(context, (done) => {
      void context
        .event(
          'download-progress',
          {
            deploymentId: deployment.id,
            version: deployment.version,
            progress: {
              done,
              total: deployment.method === 'delta' ? deployment.delta!.size : manifest.image.size,
              bytesDownloaded: done,
            },
          },
          false,
        )
        .catch(() => undefined);
    });
    const common = {
      fetcher: context.io.fetcher,
      clock: context.io.clock,
      limits: context.limits.download,
      signal: context.signal,
      onProgress: progress,
      log: context.log,
      ...(context.io.random ? { random: context.io.random } : {}),
    };
    if (deployment.method === 'delta' && deployment.delta) {
      const path = context.spoolPath(deployment);
      await SpoolFile.checkSpace(
        path,
        deployment.delta.size,
        context.limits.maxSpoolBytes,
        context.limits.spoolReserveBytes,
      );
      const spool = new SpoolFile(
        path,
        deployment.delta.size,
        {
          durableBytes: deployment.spoolBytes ?? 0,
          everyBytes: context.limits.checkpointBytes,
          save: (n) =>
            context.checkpoint((dep) => {
              dep.spoolBytes = n;
            }),
          ...(context.io.faults ? { faults: context.io.faults } : {}),
        },
        context.signal,
      );
      try {
        await download({
          ...common,
          url: deployment.delta.url,
          offset: 0,
          size: deployment.delta.size,
          sink: spool,
          ...(deployment.origin === 'server'
            ? { refreshUrl: () => context.refreshArtifactUrl('delta') }
            : {}),
        });
        await spool.complete();
      } finally {
        await spool.close();
      }
      if ((await SpoolFile.sha256(path)) !== deployment.delta.sha256) {
        await SpoolFile.remove(path);
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_DELTA_HASH_MISMATCH',
          `spool of ${deployment.delta.size} bytes`,
        );
      }
    } else {
      const writer = await context.io.slots.openForInstall(deployment.targetSlot, context.bootedSlot);
      try {
        const chunkWriter = new ChunkWriter(writer, manifest.image, deployment.verifiedChunks, {
          everyBytes: context.limits.checkpointBytes,
          save: (n) =>
            context.checkpoint((dep) => {
              dep.verifiedChunks = n;
            }),
        });
        await download({
          ...common,
          url: deployment.full.url,
          offset: deployment.full.offset ?? 0,
          size: deployment.full.size,
          sink: chunkWriter,
          ...(deployment.origin === 'server' ? { refreshUrl: () => context.refreshArtifactUrl('full') } : {}),
        });
        await chunkWriter.finish();
      } finally {
        await writer.close();
      }
    }
    await context.milestone('downloaded', { detail: { method: deployment.method } });
    return { event: 'downloaded' };
  },

  /** Delta: apply base=active (read-only) → inactive, chunk-verified. Then the whole-image hash, always. */
  async Installing(context) {
    const deployment = context.deployment;
    const manifest = await context.loadRelease(deployment.releaseFile);
    if (deployment.method === 'delta' && deployment.delta) {
      // The codec is loaded only when a delta is installed: idle memory stays near Node's own.
      const { applyDelta } = await import('@flotilla/delta');
      const base = await context.io.slots.openRead(deployment.fromSlot);
      const writer = await context.io.slots
        .openForInstall(deployment.targetSlot, context.bootedSlot)
        .catch(async (err: unknown) => {
          await base.close();
          throw err;
        });
      try {
        // A power cut mid-apply restarts the apply from the first byte: the spool and the base
        // (the active slot) are untouched by it, and the codec's state cannot be resumed.
        // Chunks written before the cut are simply written again; nothing counts until the
        // whole-image hash below.
        const chunkWriter = new ChunkWriter(writer, manifest.image, 0, {
          everyBytes: Number.MAX_SAFE_INTEGER,
          save: async () => undefined,
        });
        await applyDelta({
          base: {
            read: (buf, off, len, pos) =>
              base.read(Buffer.from(buf.buffer, buf.byteOffset + off, len), pos, len),
          },
          delta: context.spoolPath(deployment),
          target: {
            write: (chunk) => chunkWriter.write(chunk),
            commit: () => chunkWriter.finish(),
            abort: async () => undefined,
          },
          expectedTargetSha256: manifest.image.sha256,
          expectedTargetSize: manifest.image.size,
          maxTargetSize: await context.io.slots.device(deployment.targetSlot).size(),
          signal: context.signal,
        });
      } finally {
        try {
          await writer.close();
        } finally {
          await base.close();
        }
      }
    }
    const slotHash = await hashSlot(
      context.io.slots.device(deployment.targetSlot),
      manifest.image,
      context.limits.readBlockBytes,
      {
        signal: context.signal,
      },
    );
    if (slotHash.sha256 !== manifest.image.sha256 || slotHash.firstBadChunk !== null)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_IMAGE_HASH_MISMATCH',
        `slot ${deployment.targetSlot}: first bad chunk ${slotHash.firstBadChunk ?? '-'}`,
      );
    return {
      event: 'installed',
      patch: (record) => {
        record.slots[deployment.targetSlot] = {
          version: deployment.version,
          imageSha256: deployment.imageSha256,
          releaseFile: deployment.releaseFile,
        };
      },
    };
  },

  /**
   * Drop the spool (only now: a power cut before Installed was persisted re-runs the apply, which
   * needs it), after-install hooks, then arm the trial boot (skipped if a power cut booted it).
   */
  async Installed(context) {
    const deployment = context.deployment;
    if (deployment.delta) await SpoolFile.remove(context.spoolPath(deployment));
    await context.runHooks('after-install');
    if (context.bootedSlot !== deployment.targetSlot)
      await context.io.bootloader.armTrial(deployment.targetSlot, context.committedSlot);
    await context.milestone('installed', {
      detail: { targetSlot: deployment.targetSlot, method: deployment.method },
    });
    return { event: 'armed' };
  },

  /**
   * Already on the new slot → verify it. On the old slot with the trial still armed → (lock,
   * hook) reboot. On the old slot with the trial gone → the bootloader fell back by itself.
   */
  async Rebooting(context) {
    const deployment = context.deployment;
    if (context.bootedSlot === deployment.targetSlot) return { event: 'booted' };
    const bootState = await context.io.bootloader.read();
    if (!bootState.trial || bootState.primary !== deployment.targetSlot)
      return fellBack(bootState.attempts, bootState.limit);
    await context.waitForUpdateLock();
    await context.runHooks('before-reboot');
    await context.milestone('rebooting', { detail: { targetSlot: deployment.targetSlot } });
    await Promise.race([context.flushReports(), context.io.clock.sleep(2000, context.signal)]).catch(
      () => undefined,
    );
    await context.io.reboot.reboot(`update to ${deployment.version}`);
    return { halt: true };
  },

  /** The expected slot must be the booted one; then every health check within the deadline. */
  async Verifying(context) {
    const deployment = context.deployment;
    if (context.bootedSlot !== deployment.targetSlot) {
      const bootState = await context.io.bootloader.read();
      return fellBack(bootState.attempts, bootState.limit);
    }
    const checks = context.io.health ?? [];
    const deadline = context.io.clock.monotonicMs() + context.limits.health.deadlineMs;
    let failure = 'no result';
    for (;;) {
      failure = '';
      for (const check of checks) {
        const left = deadline - context.io.clock.monotonicMs();
        const result = await check
          .run({
            signal: context.signal,
            timeoutMs: Math.max(1, Math.min(context.limits.health.checkTimeoutMs, left)),
            waitOnline: (ms) => context.waitOnline(ms),
          })
          .catch((err: Error) => ({ ok: false as const, reason: `${check.name}: ${err.message}` }));
        if (!result.ok) {
          failure = result.reason;
          break;
        }
      }
      if (!failure) return { event: 'healthy' };
      if (context.io.clock.monotonicMs() + context.limits.health.retryIntervalMs > deadline) break;
      await context.io.clock.sleep(context.limits.health.retryIntervalMs, context.signal);
    }
    return {
      event: 'unhealthy',
      error: toErrorReport(new AgentError('FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED', failure)),
    };
  },

  /**
   * Mark good first (a failure here means the trial is not confirmed), the anti-rollback floor
   * going into the same environment write; then the floor's own file; then record and report.
   */
  async Committed(context) {
    const deployment = context.deployment;
    const floor = Math.max(context.securityVersion, deployment.securityVersion);
    await context.io.bootloader.commit(deployment.targetSlot, { securityFloor: floor });
    await context.raiseFloor(floor);
    await context
      .milestone('healthy', { detail: { slot: deployment.targetSlot } })
      .catch(reportFailure(context));
    await context.runHooks('after-commit').catch(reportFailure(context));
    return {
      event: 'done',
      patch: (record) => {
        record.committedSlot = deployment.targetSlot;
        record.securityVersion = floor;
        record.slots[deployment.targetSlot] = {
          version: deployment.version,
          imageSha256: deployment.imageSha256,
          releaseFile: deployment.releaseFile,
        };
        record.lastError = null;
      },
    };
  },

  /**
   * On the new slot: hand the bootloader back to the old one and reboot. On the old slot: done.
   * If the hand-back or the reboot fails we are still on the new slot: that is reported as such
   * (ROLLBACK_PENDING, via Failed), never as rolled back.
   */
  async RollingBack(context) {
    const deployment = context.deployment;
    await context.runHooks('on-rollback').catch(reportFailure(context));
    if (context.bootedSlot === deployment.targetSlot) {
      try {
        await context.io.bootloader.abortTrial(deployment.fromSlot);
        await Promise.race([context.flushReports(), context.io.clock.sleep(2000, context.signal)]).catch(
          () => undefined,
        );
        await context.io.reboot.reboot(`rollback from ${deployment.version}`);
      } catch (err) {
        if (isKilled(err)) throw err;
        const why = context.lastError
          ? `${context.lastError.code}: ${context.lastError.message}`
          : 'rollback';
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_ROLLBACK_PENDING',
          `${why}; hand-back to slot ${deployment.fromSlot} failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      return { halt: true };
    }
    return { event: 'reverted' };
  },

  /** The bootloader points at the committed slot again; tell the server why we are back. */
  async RolledBack(context) {
    const bootState = await context.io.bootloader.read();
    if (
      context.bootedSlot === context.committedSlot &&
      (bootState.trial || bootState.primary !== context.committedSlot)
    )
      await context.io.bootloader.abortTrial(context.committedSlot);
    await context.milestone('rolled-back', {
      reason: context.lastError ?? {
        code: 'FLOTILLA_ERR_INTERNAL',
        message: 'rolled back without a recorded reason',
      },
      detail: { slot: context.bootedSlot },
    });
    return { event: 'done' };
  },

  /**
   * On the old slot: disarm a trial if one was armed, drop the spool, report the code.
   * Stranded on the new, uncommitted slot (the hand-back failed): report that, leave the trial
   * armed and reboot — every boot counts against bootlimit until the bootloader falls back by
   * itself; this state then runs once more on the old slot (same eventId) and ends.
   */
  async Failed(context) {
    const deployment = context.deployment;
    const stranded =
      context.bootedSlot === deployment.targetSlot && context.bootedSlot !== context.committedSlot;
    if (!stranded && context.bootedSlot !== deployment.targetSlot) {
      const bootState = await context.io.bootloader.read();
      if (bootState.trial || bootState.primary !== context.committedSlot)
        await context.io.bootloader.abortTrial(context.committedSlot);
    }
    await SpoolFile.remove(context.spoolPath(deployment));
    await context.milestone('failed', {
      reason: context.lastError ?? {
        code: 'FLOTILLA_ERR_INTERNAL',
        message: 'failed without a recorded reason',
      },
      detail: { slot: context.bootedSlot, committedSlot: context.committedSlot },
    });
    if (stranded) {
      await Promise.race([context.flushReports(), context.io.clock.sleep(2000, context.signal)]).catch(
        () => undefined,
      );
      await context.io.reboot.reboot(
        `rollback pending from ${deployment.version}: let the bootloader fall back`,
      );
      return { halt: true };
    }
    return { event: 'done' };
  },
};

async function recheckOffer(context: StepContext): Promise<void> {
  const deployment = context.deployment;
  const now = context.io.clock.now();
  const device = { hardware: context.device.hardware, securityVersion: context.securityVersion };
  if (!deployment.offerFile) {
    const env = await context.loadEnvelope(deployment.releaseFile);
    checkInstallable(verifyRelease(env, context.root, now, { allowKinds: ['release', 'recovery'] }), device);
    return;
  }
  try {
    verifyOffer(await context.loadEnvelope(deployment.offerFile), {
      root: context.root,
      now,
      deviceId: context.device.deviceId,
      device,
      activeImageSha256: deployment.delta?.fromImageSha256 ?? null,
    });
  } catch (err) {
    // A delta refused on receipt fails the base check again; the full image is what we take.
    if (!(deployment.deltaRefused && (err as { code?: string }).code === 'FLOTILLA_ERR_DELTA_BASE_MISMATCH'))
      throw err;
  }
}

function fellBack(attempts: number, limit: number): StepOutcome {
  return {
    event: 'fell-back',
    error: toErrorReport(
      new AgentError('FLOTILLA_ERR_AGENT_BOOT_FALLBACK', `boot attempts ${attempts} of limit ${limit}`),
    ),
  };
}

/** After the decision is made, a reporting or hook problem must not undo it: log it and go on. */
function reportFailure(context: StepContext) {
  return (err: unknown) => {
    if (isKilled(err)) throw err;
    context.log.warn({ err: (err as Error).message }, 'non-fatal failure after the decision');
  };
}
