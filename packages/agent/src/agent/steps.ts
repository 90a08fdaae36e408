import { checkInstallable, verifyOffer, verifyRelease } from '@flotilla/protocol';
import { download } from '../download/downloader.js';
import { AgentError, type ErrorReport, isKilled, toErrorReport } from '../errors.js';
import { ChunkWriter } from '../install/chunk-writer.js';
import { SpoolFile } from '../install/spool.js';
import { hashSlot } from '../slots/hash-slot.js';
import type { AgentState, StepEvent } from '../state/machine.js';
import type { AgentRecord } from '../state/record.js';
import type { Agent } from './agent.js';

/** What a state's work ends with: an event for the table, or "halt" (a reboot is under way). */
export type StepOutcome =
  | { event: StepEvent; error?: ErrorReport; patch?: (r: AgentRecord) => void }
  | { halt: true };

type Step = (a: Agent) => Promise<StepOutcome>;

/** Events that report progress at most every `progressEveryMs`. */
function throttled(a: Agent, fn: (done: number) => void): (done: number) => void {
  let last = -Infinity;
  return (done) => {
    const t = a.deps.clock.monotonicMs();
    if (t - last < a.limits.download.progressEveryMs) return;
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
    throw new Error('Idle has no work');
  },

  /** Re-check the offer (it may have expired while we were down), space, hooks; pick the method. */
  async Offered(a) {
    const d = a.deployment;
    await a.milestone(d.origin === 'local' ? 'local-install' : 'offer-accepted', {
      detail: { targetSlot: d.targetSlot, origin: d.origin, deltaRefused: d.deltaRefused?.code ?? null },
      ...(d.deltaRefused ? { reason: d.deltaRefused } : {}),
    });
    // Just verified on receipt; after a restart the offer may have expired meanwhile: check again.
    if (a.resumedFrom === 'Offered') await recheckOffer(a);
    const m = await a.loadRelease(d.releaseFile);
    const slotSize = await a.deps.slots.device(d.targetSlot).size();
    if (m.image.size > slotSize || m.image.size > a.limits.maxImageBytes)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SLOT_TOO_SMALL',
        `image ${m.image.size} bytes, slot ${slotSize}`,
      );
    if (m.image.chunkSize > a.limits.maxChunkBytes)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_SLOT_TOO_SMALL',
        `chunk size ${m.image.chunkSize} above the limit`,
      );
    await a.runHooks('before-install');
    const method = d.delta ? 'delta' : 'full';
    return {
      event: 'accepted',
      patch: (r) => {
        r.deployment!.method = method;
        r.slots[d.targetSlot] = null; // its old contents are about to be overwritten
      },
    };
  },

  /** Full image: straight into the inactive slot, chunk-verified. Delta: into the spool, hash-checked. */
  async Downloading(a) {
    const d = a.deployment;
    const m = await a.loadRelease(d.releaseFile);
    const progress = throttled(a, (done) => {
      void a
        .event(
          'download-progress',
          {
            deploymentId: d.id,
            version: d.version,
            progress: {
              done,
              total: d.method === 'delta' ? d.delta!.size : m.image.size,
              bytesDownloaded: done,
            },
          },
          false,
        )
        .catch(() => undefined);
    });
    const common = {
      fetcher: a.deps.fetcher,
      clock: a.deps.clock,
      limits: a.limits.download,
      signal: a.signal,
      onProgress: progress,
      log: a.log,
      ...(a.deps.random ? { random: a.deps.random } : {}),
    };
    if (d.method === 'delta' && d.delta) {
      const path = a.spoolPath(d);
      await SpoolFile.checkSpace(path, d.delta.size, a.limits.maxSpoolBytes, a.limits.spoolReserveBytes);
      const spool = new SpoolFile(path, d.delta.size, {
        durableBytes: d.spoolBytes ?? 0,
        everyBytes: a.limits.checkpointBytes,
        save: (n) =>
          a.checkpoint((dep) => {
            dep.spoolBytes = n;
          }),
        ...(a.deps.faults ? { faults: a.deps.faults } : {}),
      });
      try {
        await download({
          ...common,
          url: d.delta.url,
          offset: 0,
          size: d.delta.size,
          sink: spool,
          ...(d.origin === 'server' ? { refreshUrl: () => a.refreshArtifactUrl('delta') } : {}),
        });
        await spool.complete();
      } finally {
        await spool.close();
      }
      if ((await SpoolFile.sha256(path)) !== d.delta.sha256) {
        await SpoolFile.remove(path);
        throw new AgentError('FLOTILLA_ERR_AGENT_DELTA_HASH_MISMATCH', `spool of ${d.delta.size} bytes`);
      }
    } else {
      const writer = await a.deps.slots.openForInstall(d.targetSlot, a.booted);
      try {
        const cw = new ChunkWriter(writer, m.image, d.verifiedChunks, {
          everyBytes: a.limits.checkpointBytes,
          save: (n) =>
            a.checkpoint((dep) => {
              dep.verifiedChunks = n;
            }),
        });
        await download({
          ...common,
          url: d.full.url,
          offset: d.full.offset ?? 0,
          size: d.full.size,
          sink: cw,
          ...(d.origin === 'server' ? { refreshUrl: () => a.refreshArtifactUrl('full') } : {}),
        });
        await cw.finish();
      } finally {
        await writer.close();
      }
    }
    await a.milestone('downloaded', { detail: { method: d.method } });
    return { event: 'downloaded' };
  },

  /** Delta: apply base=active (read-only) → inactive, chunk-verified. Then the whole-image hash, always. */
  async Installing(a) {
    const d = a.deployment;
    const m = await a.loadRelease(d.releaseFile);
    if (d.method === 'delta' && d.delta) {
      // The codec is loaded only when a delta is installed: idle memory stays near Node's own.
      const { applyDelta } = await import('@flotilla/delta');
      const base = await a.deps.slots.openRead(d.fromSlot);
      const writer = await a.deps.slots.openForInstall(d.targetSlot, a.booted);
      try {
        // A power cut mid-apply restarts the apply from the first byte: the spool and the base
        // (the active slot) are untouched by it, and the codec's state cannot be resumed.
        // Chunks written before the cut are simply written again; nothing counts until the
        // whole-image hash below.
        const cw = new ChunkWriter(writer, m.image, 0, {
          everyBytes: Number.MAX_SAFE_INTEGER,
          save: async () => undefined,
        });
        await applyDelta({
          base: {
            read: (buf, off, len, pos) =>
              base.read(Buffer.from(buf.buffer, buf.byteOffset + off, len), pos, len),
          },
          delta: a.spoolPath(d),
          target: {
            write: (chunk) => cw.write(chunk),
            commit: () => cw.finish(),
            abort: async () => undefined,
          },
          expectedTargetSha256: m.image.sha256,
          expectedTargetSize: m.image.size,
          maxTargetSize: await a.deps.slots.device(d.targetSlot).size(),
          signal: a.signal,
        });
      } finally {
        await writer.close();
        await base.close();
      }
    }
    const r = await hashSlot(a.deps.slots.device(d.targetSlot), m.image, a.limits.readBlockBytes, {
      signal: a.signal,
    });
    if (r.sha256 !== m.image.sha256 || r.firstBadChunk !== null)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_IMAGE_HASH_MISMATCH',
        `slot ${d.targetSlot}: first bad chunk ${r.firstBadChunk ?? '-'}`,
      );
    return {
      event: 'installed',
      patch: (rec) => {
        rec.slots[d.targetSlot] = {
          version: d.version,
          imageSha256: d.imageSha256,
          releaseFile: d.releaseFile,
        };
      },
    };
  },

  /**
   * Drop the spool (only now: a power cut before Installed was persisted re-runs the apply, which
   * needs it), after-install hooks, then arm the trial boot (skipped if a power cut booted it).
   */
  async Installed(a) {
    const d = a.deployment;
    if (d.delta) await SpoolFile.remove(a.spoolPath(d));
    await a.runHooks('after-install');
    if (a.booted !== d.targetSlot) await a.deps.bootloader.armTrial(d.targetSlot, a.rec.committedSlot);
    await a.milestone('installed', { detail: { targetSlot: d.targetSlot, method: d.method } });
    return { event: 'armed' };
  },

  /**
   * Already on the new slot → verify it. On the old slot with the trial still armed → (lock,
   * hook) reboot. On the old slot with the trial gone → the bootloader fell back by itself.
   */
  async Rebooting(a) {
    const d = a.deployment;
    if (a.booted === d.targetSlot) return { event: 'booted' };
    const bs = await a.deps.bootloader.read();
    if (!bs.trial || bs.primary !== d.targetSlot) return fellBack(bs.attempts, bs.limit);
    await a.waitForUpdateLock();
    await a.runHooks('before-reboot');
    await a.milestone('rebooting', { detail: { targetSlot: d.targetSlot } });
    await Promise.race([a.reporter.flush(), a.deps.clock.sleep(2000, a.signal)]).catch(() => undefined);
    await a.deps.reboot.reboot(`update to ${d.version}`);
    return { halt: true };
  },

  /** The expected slot must be the booted one; then every health check within the deadline. */
  async Verifying(a) {
    const d = a.deployment;
    if (a.booted !== d.targetSlot) {
      const bs = await a.deps.bootloader.read();
      return fellBack(bs.attempts, bs.limit);
    }
    const checks = a.deps.health ?? [];
    const deadline = a.deps.clock.monotonicMs() + a.limits.health.deadlineMs;
    let failure = 'no result';
    for (;;) {
      failure = '';
      for (const c of checks) {
        const left = deadline - a.deps.clock.monotonicMs();
        const r = await c
          .run({
            signal: a.signal,
            timeoutMs: Math.max(1, Math.min(a.limits.health.checkTimeoutMs, left)),
            waitOnline: (ms) => a.waitOnline(ms),
          })
          .catch((err: Error) => ({ ok: false as const, reason: `${c.name}: ${err.message}` }));
        if (!r.ok) {
          failure = r.reason;
          break;
        }
      }
      if (!failure) return { event: 'healthy' };
      if (a.deps.clock.monotonicMs() + a.limits.health.retryIntervalMs > deadline) break;
      await a.deps.clock.sleep(a.limits.health.retryIntervalMs, a.signal);
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
  async Committed(a) {
    const d = a.deployment;
    const floor = Math.max(a.rec.securityVersion, d.securityVersion);
    await a.deps.bootloader.commit(d.targetSlot, { securityFloor: floor });
    await a.floor.raise(floor);
    await a.milestone('healthy', { detail: { slot: d.targetSlot } }).catch(reportFailure(a));
    await a.runHooks('after-commit').catch(reportFailure(a));
    return {
      event: 'done',
      patch: (r) => {
        r.committedSlot = d.targetSlot;
        r.securityVersion = floor;
        r.slots[d.targetSlot] = {
          version: d.version,
          imageSha256: d.imageSha256,
          releaseFile: d.releaseFile,
        };
        r.lastError = null;
      },
    };
  },

  /**
   * On the new slot: hand the bootloader back to the old one and reboot. On the old slot: done.
   * If the hand-back or the reboot fails we are still on the new slot: that is reported as such
   * (ROLLBACK_PENDING, via Failed), never as rolled back.
   */
  async RollingBack(a) {
    const d = a.deployment;
    await a.runHooks('on-rollback').catch(reportFailure(a));
    if (a.booted === d.targetSlot) {
      try {
        await a.deps.bootloader.abortTrial(d.fromSlot);
        await Promise.race([a.reporter.flush(), a.deps.clock.sleep(2000, a.signal)]).catch(() => undefined);
        await a.deps.reboot.reboot(`rollback from ${d.version}`);
      } catch (err) {
        if (isKilled(err)) throw err;
        const why = a.rec.lastError ? `${a.rec.lastError.code}: ${a.rec.lastError.message}` : 'rollback';
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_ROLLBACK_PENDING',
          `${why}; hand-back to slot ${d.fromSlot} failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      return { halt: true };
    }
    return { event: 'reverted' };
  },

  /** The bootloader points at the committed slot again; tell the server why we are back. */
  async RolledBack(a) {
    const bs = await a.deps.bootloader.read();
    if (a.booted === a.rec.committedSlot && (bs.trial || bs.primary !== a.rec.committedSlot))
      await a.deps.bootloader.abortTrial(a.rec.committedSlot);
    await a.milestone('rolled-back', {
      reason: a.rec.lastError ?? {
        code: 'FLOTILLA_ERR_INTERNAL',
        message: 'rolled back without a recorded reason',
      },
      detail: { slot: a.booted },
    });
    return { event: 'done' };
  },

  /**
   * On the old slot: disarm a trial if one was armed, drop the spool, report the code.
   * Stranded on the new, uncommitted slot (the hand-back failed): report that, leave the trial
   * armed and reboot — every boot counts against bootlimit until the bootloader falls back by
   * itself; this state then runs once more on the old slot (same eventId) and ends.
   */
  async Failed(a) {
    const d = a.deployment;
    const stranded = a.booted === d.targetSlot && a.booted !== a.rec.committedSlot;
    if (!stranded && a.booted !== d.targetSlot) {
      const bs = await a.deps.bootloader.read();
      if (bs.trial || bs.primary !== a.rec.committedSlot)
        await a.deps.bootloader.abortTrial(a.rec.committedSlot);
    }
    await SpoolFile.remove(a.spoolPath(d));
    await a.milestone('failed', {
      reason: a.rec.lastError ?? {
        code: 'FLOTILLA_ERR_INTERNAL',
        message: 'failed without a recorded reason',
      },
      detail: { slot: a.booted, committedSlot: a.rec.committedSlot },
    });
    if (stranded) {
      await Promise.race([a.reporter.flush(), a.deps.clock.sleep(2000, a.signal)]).catch(() => undefined);
      await a.deps.reboot.reboot(`rollback pending from ${d.version}: let the bootloader fall back`);
      return { halt: true };
    }
    return { event: 'done' };
  },
};

async function recheckOffer(a: Agent): Promise<void> {
  const d = a.deployment;
  const now = a.deps.clock.now();
  const device = { hardware: a.config.hardware, securityVersion: a.rec.securityVersion };
  if (!d.offerFile) {
    const env = await a.loadOffer(d.releaseFile);
    checkInstallable(verifyRelease(env, a.root, now, { allowKinds: ['release', 'recovery'] }), device);
    return;
  }
  try {
    verifyOffer(await a.loadOffer(d.offerFile), {
      root: a.root,
      now,
      deviceId: a.config.deviceId,
      device,
      activeImageSha256: d.delta?.fromImageSha256 ?? null,
    });
  } catch (err) {
    // A delta refused on receipt fails the base check again; the full image is what we take.
    if (!(d.deltaRefused && (err as { code?: string }).code === 'FLOTILLA_ERR_DELTA_BASE_MISMATCH'))
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
function reportFailure(a: Agent) {
  return (err: unknown) => {
    if (isKilled(err)) throw err;
    a.log.warn({ err: (err as Error).message }, 'non-fatal failure after the decision');
  };
}
