import type { RolloutRunner } from '../deploy/rollout-runner.js';
import type { EventBus } from '../events/bus.js';

/** At most one whole-engine pass per this many ms for reports that arrived on other nodes. */
const REPORT_KICK_MS = 250;

/**
 * Sharing one database, the reports and operators' actions that move a rollout mostly arrive on
 * nodes that do not run its engine. Their events reach this node through the event relay; the
 * engine (when this node holds it) runs the rollouts they name at once instead of on its timer.
 * On a node without the engine the runner is stopped and these calls do nothing.
 */
export function kickOnRemoteEvents(bus: EventBus, runner: RolloutRunner): () => void {
  let reportKick: NodeJS.Timeout | null = null;
  const off = bus.subscribeRemote((e) => {
    const rolloutId = e.data.rolloutId;
    if (e.type.startsWith('rollout.') && typeof rolloutId === 'string') runner.schedule(rolloutId);
    else if (e.type === 'device.event' && e.data.deploymentId && !reportKick) {
      reportKick = setTimeout(() => {
        reportKick = null;
        void runner.tickAll().catch(() => undefined);
      }, REPORT_KICK_MS);
      reportKick.unref();
    }
  });
  return () => {
    off();
    if (reportKick) clearTimeout(reportKick);
  };
}
