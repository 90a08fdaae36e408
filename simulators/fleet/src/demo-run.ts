import type { DemoArgs } from './demo-args.js';
import { formatBytes } from './progress.js';
import {
  canarySize,
  collectOutcome,
  describeBytes,
  isSettledPause,
  isTerminalRollout,
  type RolloutOutcome,
  stagedPhases,
  type Writer,
  watchRollout,
} from './story.js';
import { startWorld, type World } from './world.js';

/**
 * The demo: a fleet on 1.0.0, a staged rollout of 1.1.0 with deltas, then 1.2.0-bad caught by
 * its canary. Returns the summary and the checks it made; the exit code follows the checks.
 */
export interface DemoSummaryJson {
  devices: number;
  rollouts: {
    release: string;
    status: string;
    healthy: number;
    failed: number;
    rolledBack: number;
    notStarted: number;
  }[];
  bytes: { sent: number; fullEquivalent: number };
}

export interface DemoResult {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
  summary: DemoSummaryJson;
  outcomes: RolloutOutcome[];
  dashboardUrl: string;
  world: World;
}

export async function runDemo(args: DemoArgs, out: Writer): Promise<DemoResult> {
  const say = (s: string) => out.write(`${s}\n`);
  const t0 = Date.now();
  const world = await startWorld({
    devices: args.devices,
    workDir: args.workDir,
    keepWorkDir: args.workDir !== undefined,
    size: args.devices > 300 ? 'light' : 'standard',
    faults: args.faults,
    seed: args.seed,
    timeScale: 0.05,
    log: (l) => say(`• ${l}`),
  });
  const { server, fleet } = world;
  say(
    `• server: API ${server.apiUrl} · MQTT ${server.mqtt.host}:${server.mqtt.port} · dashboard ${server.dashboardUrl}`,
  );

  say(`• powering on ${args.devices} devices (real agents over MQTT)`);
  await fleet.powerOn();
  await fleet.waitFor(
    `all ${args.devices} devices online`,
    async () => (await server.onlineCount()) >= args.devices,
    60_000 + args.devices * 100,
    250,
  );
  say(`• ${args.devices} devices online after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const rolloutTimeout = 120_000 + args.devices * 600;
  const outcomes: RolloutOutcome[] = [];

  // 1. A good release, staged: canary → 50 % → 100 %.
  await world.publish('1.1.0');
  const canary = canarySize(args.devices);
  say(`\n▶ rollout of 1.1.0: canary (${canary}) → 50 % → 100 %, deltas from 1.0.0`);
  let started = Date.now();
  const r1 = await server.startRollout({
    name: 'demo 1.1.0',
    release: '1.1.0',
    phases: stagedPhases(args.devices, canary),
    maxConcurrent: Math.max(10, Math.min(200, args.devices)),
  });
  const v1 = await watchRollout(server, fleet, r1, {
    out,
    until: isTerminalRollout,
    timeoutMs: rolloutTimeout,
  });
  outcomes.push(await collectOutcome(server, fleet, r1, v1, started));

  // 2. A bad release: the canary devices fall back by themselves and the rollout pauses.
  await world.publish('1.2.0-bad');
  say(`\n▶ rollout of 1.2.0-bad (its app fails its health check): canary (${canary}) → 50 % → 100 %`);
  started = Date.now();
  const r2 = await server.startRollout({
    name: 'demo 1.2.0-bad',
    release: '1.2.0-bad',
    phases: stagedPhases(args.devices, canary),
    maxConcurrent: Math.max(10, Math.min(200, args.devices)),
  });
  const v2 = await watchRollout(server, fleet, r2, {
    out,
    until: (v) => isSettledPause(v) || isTerminalRollout(v),
    timeoutMs: rolloutTimeout,
  });
  outcomes.push(await collectOutcome(server, fleet, r2, v2, started));

  const summary: DemoSummaryJson = {
    devices: args.devices,
    rollouts: outcomes.map((o) => ({
      release: o.release,
      status: o.view.status,
      healthy: o.view.totals.healthy,
      failed: o.view.totals.failed,
      rolledBack: o.view.totals.rolledBack,
      notStarted: o.view.totals.notStarted,
    })),
    bytes: { sent: fleet.bytesDownloaded(), fullEquivalent: fleet.fullEquivalentBytes() },
  };
  const checks = judge(world, outcomes, summary, canary);
  printSummary(say, world, outcomes, summary, checks, (Date.now() - t0) / 1000);
  return {
    ok: checks.every((c) => c.ok),
    checks,
    summary,
    outcomes,
    dashboardUrl: server.dashboardUrl,
    world,
  };
}

function judge(
  world: World,
  outcomes: RolloutOutcome[],
  summary: DemoSummaryJson,
  canary: number,
): DemoResult['checks'] {
  const [good, bad] = outcomes as [RolloutOutcome, RolloutOutcome];
  const deviceCount = summary.devices;
  const versions = world.fleet.versions();
  const faulty = world.fleet.devices.filter((d) => d.fault).length;
  const checks: DemoResult['checks'] = [];
  const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  check(
    '1.1.0 reached every device',
    good.view.status === 'completed' && good.view.totals.healthy === deviceCount,
    `${good.view.status}, ${good.view.totals.healthy}/${deviceCount} healthy`,
  );
  check(
    '1.2.0-bad paused at its canary',
    bad.view.status === 'paused' && bad.view.currentPhase === 0 && bad.view.pause?.kind === 'error-threshold',
    `${bad.view.status}${bad.view.pause ? ` (${bad.view.pause.detail})` : ''}, phase ${bad.view.currentPhase + 1}`,
  );
  check(
    'no 1.2.0-bad device stayed on it',
    bad.view.totals.healthy === 0 &&
      bad.rollbacks.length >= 1 &&
      bad.rollbacks.every((r) => r.runningNow === '1.1.0'),
    `${bad.rollbacks.length} rolled back, now on ${[...new Set(bad.rollbacks.map((r) => r.runningNow))].join(', ') || '-'}`,
  );
  check(
    'every rollback has a reason',
    bad.rollbacks.every((r) => !!r.reason),
    bad.rollbacks
      .map((r) => r.reason ?? 'none')
      .slice(0, 1)
      .join('') || '-',
  );
  check(
    'the rest of the fleet never got 1.2.0-bad',
    bad.view.totals.notStarted >= deviceCount - canary,
    `${bad.view.totals.notStarted} of ${deviceCount} not started`,
  );
  check(
    'the fleet runs 1.1.0',
    (versions.get('1.1.0') ?? 0) === deviceCount,
    [...versions].map(([v, c]) => `${v}: ${c}`).join(', '),
  );
  check(
    'deltas saved bytes',
    summary.bytes.sent > 0 && summary.bytes.sent < summary.bytes.fullEquivalent,
    `${formatBytes(summary.bytes.sent)} vs ${formatBytes(summary.bytes.fullEquivalent)}`,
  );
  if (faulty) check('fault profiles were active', true, `${faulty} devices had a fault profile`);
  return checks;
}

function printSummary(
  say: (line: string) => void,
  world: World,
  outcomes: RolloutOutcome[],
  summary: DemoSummaryJson,
  checks: DemoResult['checks'],
  seconds: number,
): void {
  say('\n── summary ──────────────────────────────────────────────');
  for (const outcome of outcomes) {
    const totals = outcome.view.totals;
    say(
      `${outcome.release.padEnd(10)} ${outcome.view.status.padEnd(9)} healthy ${totals.healthy} · failed ${totals.failed} · rolled back ${totals.rolledBack} · not started ${totals.notStarted}  (${outcome.seconds.toFixed(1)} s)`,
    );
    if (outcome.view.pause) say(`           paused: ${outcome.view.pause.detail}`);
    for (const rollback of outcome.rollbacks)
      say(
        `           ↩ ${rollback.deviceId} rolled back (now on ${rollback.runningNow ?? '?'}): ${rollback.reason ?? 'no reason given'}`,
      );
  }
  say(describeBytes(summary.bytes.sent, summary.bytes.fullEquivalent));
  const faults = world.fleet.devices.filter((d) => d.counters.powerCuts > 0).length;
  if (faults) say(`${faults} devices lost power during the run`);
  for (const check of checks) say(`${check.ok ? '✔' : '✘'} ${check.name}: ${check.detail}`);
  say(`finished in ${seconds.toFixed(1)} s`);
  say(
    `dashboard (served while the demo ran): ${world.server.dashboardUrl} — \`pnpm demo --keep-running\` keeps it up`,
  );
}
