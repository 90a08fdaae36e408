import type { Clock } from '../clock.js';
import { AgentError } from '../errors.js';
import { HOOK_EXIT, type HookPoint, type HookRun, type HookRunner } from '../hooks/hooks.js';
import { noUpdateLock, type UpdateLock } from '../hooks/update-lock.js';
import type { AgentLimits } from '../limits.js';
import type { Deployment } from '../state/record.js';

/**
 * Runs the hooks of one point in order. Exit 0 continues, 21 retries later (bounded), anything
 * else vetoes — except at points where the decision is already made (after-commit, on-rollback),
 * where the output is still reported but the exit code changes nothing.
 */
export async function runHooks(
  point: HookPoint,
  options: {
    hooks: HookRunner | undefined;
    deployment: Deployment;
    limits: AgentLimits['hooks'];
    clock: Clock;
    signal: AbortSignal;
    report: (point: HookPoint, run: HookRun) => Promise<void>;
  },
): Promise<void> {
  const { hooks, deployment, limits, clock, signal, report } = options;
  if (!hooks) return;
  const binding = point !== 'after-commit' && point !== 'on-rollback';
  for (const name of await hooks.list(point)) {
    for (let retry = 0; ; retry++) {
      signal.throwIfAborted();
      const run = await hooks.run(point, name, {
        deploymentId: deployment.id,
        version: deployment.version,
        targetSlot: deployment.targetSlot,
      });
      await report(point, run);
      if (run.exitCode === HOOK_EXIT.ok || !binding) break;
      if (run.exitCode === HOOK_EXIT.retryLater) {
        if (retry >= limits.maxRetries)
          throw new AgentError('FLOTILLA_ERR_AGENT_HOOK_RETRY_EXHAUSTED', `${point}/${name}`);
        await clock.sleep(limits.retryIntervalMs, signal);
        continue;
      }
      throw new AgentError('FLOTILLA_ERR_AGENT_HOOK_VETO', `${point}/${name} exited ${run.exitCode}`);
    }
  }
}

/** Defers the reboot while an application holds the update lock (bounded). */
export async function waitForUpdateLock(options: {
  lock: UpdateLock | undefined;
  limits: AgentLimits['updateLock'];
  clock: Clock;
  signal: AbortSignal;
  /** Reports (once) that the reboot waits for the lock. */
  onWaiting: () => Promise<void>;
}): Promise<void> {
  const { limits, clock, signal, onWaiting } = options;
  const lock = options.lock ?? noUpdateLock;
  const start = clock.monotonicMs();
  let reported = false;
  while (await lock.held()) {
    if (clock.monotonicMs() - start > limits.maxWaitMs)
      throw new AgentError('FLOTILLA_ERR_AGENT_UPDATE_LOCKED', `held for more than ${limits.maxWaitMs} ms`);
    if (!reported) {
      reported = true;
      await onWaiting();
    }
    await clock.sleep(limits.pollMs, signal);
  }
}
