import type { Fleet } from './fleet.js';
import { sleep } from './pool.js';
import type { DeploymentView, RolloutPhaseInput, RolloutView, ServerHandle } from './ports.js';
import { formatBytes, ProgressLine } from './progress.js';

/**
 * The demo's story, as steps the demo prints and the e2e tests assert: a staged rollout that
 * reaches every device, then a bad release that its canary catches. Each step returns what the
 * server and the devices say, so the caller judges the outcome from real state.
 */
export interface Writer {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface RolloutOutcome {
  id: string;
  release: string;
  view: RolloutView;
  deployments: DeploymentView[];
  /** Devices the server recorded as rolled back, with the reason they reported. */
  rollbacks: { deviceId: string; reason: string | null; runningNow: string | null }[];
  seconds: number;
}

export interface WatchOptions {
  out?: Writer;
  /** Stop when this returns true for the view. */
  until: (v: RolloutView) => boolean;
  timeoutMs: number;
  pollMs?: number;
}

/** Phases "canary → 50 % → 100 %" as counts (the server's phase sizes are not cumulative). */
export function stagedPhases(devices: number, canary: number): RolloutPhaseInput[] {
  const c = Math.max(1, Math.min(canary, devices));
  const half = Math.max(c, Math.ceil(devices / 2));
  const phases: RolloutPhaseInput[] = [{ name: 'canary', count: c, errorThreshold: 0 }];
  if (half > c && half < devices) phases.push({ name: '50%', count: half - c, errorThreshold: 5 });
  phases.push({ name: '100%', percent: 100, errorThreshold: 5 });
  return phases;
}

export function canarySize(devices: number): number {
  return Math.max(1, Math.min(5, Math.round(devices * 0.05)));
}

export async function watchRollout(
  server: ServerHandle,
  fleet: Fleet,
  id: string,
  o: WatchOptions,
): Promise<RolloutView> {
  const line = o.out ? new ProgressLine(o.out) : null;
  const end = Date.now() + o.timeoutMs;
  let view: RolloutView | null = null;
  try {
    view = await server.rollout(id);
    for (;;) {
      line?.update(progressOf(view, fleet));
      if (o.until(view) || Date.now() > end) return view;
      await sleep(o.pollMs ?? 250);
      view = await server.rollout(id);
    }
  } finally {
    // Also on an error: the bar's redraw timer must not keep the process alive.
    if (view) line?.done(progressOf(view, fleet));
  }
}

function progressOf(v: RolloutView, fleet: Fleet) {
  const phase = v.phases[v.currentPhase];
  return {
    release: v.release,
    status: v.status,
    phase: phase ? `${v.currentPhase + 1}/${v.phases.length} ${phase.name}` : '-',
    total: v.totals.devices,
    healthy: v.totals.healthy,
    inFlight: v.totals.inFlight,
    failed: v.totals.failed,
    rolledBack: v.totals.rolledBack,
    notStarted: v.totals.notStarted,
    bytesSent: fleet.bytesDownloaded(),
  };
}

export async function collectOutcome(
  server: ServerHandle,
  fleet: Fleet,
  id: string,
  view: RolloutView,
  started: number,
): Promise<RolloutOutcome> {
  const deployments = await server.deployments(id);
  const rollbacks = deployments
    .filter((d) => d.state === 'rolled-back')
    .map((d) => ({
      deviceId: d.deviceId,
      reason: d.failureReason,
      runningNow: fleet.byId.get(d.deviceId)?.current?.release ?? null,
    }));
  return { id, release: view.release, view, deployments, rollbacks, seconds: (Date.now() - started) / 1000 };
}

export const isTerminalRollout = (v: RolloutView): boolean =>
  v.status === 'completed' || v.status === 'aborted';

/** Paused on errors and nothing of the paused phase still in flight. */
export const isSettledPause = (v: RolloutView): boolean => v.status === 'paused' && v.totals.inFlight === 0;

export function describeBytes(sent: number, full: number): string {
  const saved = full > 0 ? Math.round((1 - sent / full) * 100) : 0;
  return `${formatBytes(sent)} downloaded with deltas; full images would have been ${formatBytes(full)} (${saved}% saved)`;
}
