import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  ApiClientError,
  addServerOptions,
  clientFor,
  type PhaseProgress,
  type RolloutInfo,
  table,
  wantsJson,
  when,
} from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';
import { createProgress } from '../progress.js';

const FINISHED = new Set(['completed', 'failed', 'aborted']);
const BAR_WIDTH = 30;

/** `[#####-----x...]`: healthy (#), failed (x), in flight (~), not started (.). */
export function phaseBar(p: PhaseProgress, width = BAR_WIDTH): string {
  if (p.total === 0) return `[${' '.repeat(width)}]`;
  const cells = (n: number) => Math.round((n / p.total) * width);
  const healthy = cells(p.healthy);
  const failed = Math.min(width - healthy, cells(p.failed));
  const inFlight = Math.min(width - healthy - failed, cells(p.inFlight));
  return `[${'#'.repeat(healthy)}${'x'.repeat(failed)}${'~'.repeat(inFlight)}${'.'.repeat(width - healthy - failed - inFlight)}]`;
}

function pauseText(
  pause: Record<string, unknown> | null | undefined,
  phases: PhaseProgress[],
): string | null {
  if (!pause) return null;
  if (pause.kind === 'error-threshold') {
    const phase = Number(pause.phase);
    const name = phases[phase]?.name ?? `phase ${phase + 1}`;
    return `paused by errors in ${name}: ${pause.failed} of ${pause.total} failed, more than the ${pause.threshold} % error threshold`;
  }
  const by = pause.by ? ` by ${pause.by}` : '';
  const note = pause.note ? ` (${pause.note})` : '';
  return `paused${by}${note}`;
}

/** The human view of one rollout: header, pause reason, one progress bar per phase. */
export function renderRollout(rollout: RolloutInfo): string {
  const lines = [
    `rollout ${rollout.id}${rollout.name ? ` (${rollout.name})` : ''}: release ${rollout.release}, ${rollout.status}`,
  ];
  const summary = rollout.summary;
  if (!summary) return lines.join('\n');
  const pause = pauseText(summary.pause, summary.phases);
  if (pause) lines.push(`  ${pause}`);
  if (summary.status === 'waiting')
    lines.push('  waiting for a maintenance window to open (no new offers until then)');
  if (summary.failure) {
    const name = summary.phases[summary.failure.phase]?.name ?? `phase ${summary.failure.phase + 1}`;
    lines.push(
      `  failed: every device of ${name} finished, ${summary.failure.healthy}/${summary.failure.total} healthy, below its ${summary.failure.successThreshold} % success threshold`,
    );
  }
  if (summary.rollingBack)
    lines.push('  rolling back: devices this rollout updated get their previous release');
  for (const phase of summary.phases) {
    const mark = phase.index === summary.currentPhase && !FINISHED.has(summary.status) ? '>' : ' ';
    lines.push(
      `${mark} ${phase.name.padEnd(12)} ${phaseBar(phase)} ${String(phase.healthy).padStart(4)}/${phase.total} healthy` +
        `  ${phase.failed} failed  ${phase.inFlight} in flight  ${phase.notStarted} waiting` +
        `  [${phase.status}; success ≥${phase.successThreshold} %, errors >${phase.errorThreshold} %]`,
    );
  }
  const totals = summary.totals;
  lines.push(
    `  total: ${totals.healthy}/${totals.devices} healthy, ${totals.failed} failed, ${totals.inFlight} in flight, ${totals.notStarted} waiting` +
      (totals.aborted ? `, ${totals.aborted} stopped by the abort` : ''),
  );
  return lines.join('\n');
}

/** Turns CLI flags into a policy (a `--policy` file gives the base; flags override it). */
export function policyFromFlags(
  base: Record<string, unknown>,
  o: Record<string, unknown>,
): Record<string, unknown> {
  const policy: Record<string, unknown> = { ...base };
  const target = { ...((base.target as Record<string, unknown>) ?? {}) };
  const list = (v: unknown) =>
    String(v)
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  if (o.hardware) target.hardware = list(o.hardware);
  if (o.tag) target.tags = (o.tag as string[]).flatMap(list);
  if (o.group) target.groups = list(o.group);
  if (o.fromVersion) target.versions = list(o.fromVersion);
  if (o.channel) target.channels = list(o.channel);
  if (o.device) target.devices = (o.device as string[]).flatMap(list);
  if (o.dynamic) target.membership = 'dynamic';
  policy.target = target;

  if (o.phases !== undefined) {
    const specs = list(o.phases);
    policy.phases = specs.map((spec, i) => {
      const last = i === specs.length - 1;
      if (spec === '*' || spec === 'rest') {
        if (!last)
          throw new CliError('FLOTILLA_ERR_CLI_USAGE', `--phases: only the last phase may be '${spec}'`);
        return {};
      }
      const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(spec);
      if (!m)
        throw new CliError('FLOTILLA_ERR_CLI_USAGE', `--phases: '${spec}' is not a count, a percent or '*'`);
      return m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
    });
  }
  if (!Array.isArray(policy.phases)) policy.phases = [{}];
  const num = (v: unknown, name: string) => {
    const n = Number(v);
    if (!Number.isFinite(n))
      throw new CliError('FLOTILLA_ERR_CLI_USAGE', `${name}: '${String(v)}' is not a number`);
    return n;
  };
  policy.phases = (policy.phases as Record<string, unknown>[]).map((ph, i) => ({
    ...ph,
    ...(o.success !== undefined ? { successThreshold: num(o.success, '--success') } : {}),
    ...(o.error !== undefined ? { errorThreshold: num(o.error, '--error') } : {}),
    ...(o.minExecuted !== undefined ? { minExecuted: num(o.minExecuted, '--min-executed') } : {}),
    ...(o.soak !== undefined ? { soakSeconds: num(o.soak, '--soak') } : {}),
    ...(o.approval && i > 0 ? { requireApproval: true } : {}),
  }));
  if (o.maxConcurrent !== undefined) policy.maxConcurrent = num(o.maxConcurrent, '--max-concurrent');
  if (o.rate !== undefined) policy.rate = { kind: 'constant', perMinute: num(o.rate, '--rate') };
  if (o.timeout !== undefined) policy.deviceTimeoutSeconds = num(o.timeout, '--timeout');
  if (o.retries !== undefined) {
    const n = num(o.retries, '--retries');
    policy.retries = { failed: n, rolledBack: 0, timedOut: n };
  }
  if (o.autoRollback) policy.autoRollback = true;
  if (o.allowDowngrade) {
    const reason = typeof o.reason === 'string' ? o.reason.trim() : '';
    if (!reason)
      throw new CliError(
        'FLOTILLA_ERR_CLI_USAGE',
        '--allow-downgrade needs --reason "<why>" (it goes into the audit log)',
      );
    policy.allowDowngrade = { reason };
  } else if (o.reason !== undefined)
    throw new CliError('FLOTILLA_ERR_CLI_USAGE', '--reason goes with --allow-downgrade');
  if (o.startAt) policy.startAt = new Date(String(o.startAt)).toISOString();
  return policy;
}

async function readPolicyFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${path}: ${(err as NodeJS.ErrnoException).code ?? err}`, {
      cause: err,
    });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${path}: ${(err as Error).message}`, { cause: err });
  }
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `flotilla rollout create|list|status|pause|resume|abort|approve` over the HTTP API. */
export function registerRolloutCommands(program: Command): void {
  addServerOptions(program);
  const rollout = program.command('rollout').description('stage a release over the fleet in phases');

  rollout
    .command('create')
    .description('start a rollout of a release (policy from --policy FILE and/or the flags)')
    .requiredOption('--release <version>', 'release version to roll out')
    .option('--name <name>', 'a name for people')
    .option('--policy <file>', 'JSON policy (see docs/rollouts.md); flags below override it')
    .option('--phases <list>', "phase sizes: counts, percents and a last '*', e.g. 1,10%,*")
    .option('--success <percent>', 'success threshold of every phase (healthy ÷ phase ≥)')
    .option('--error <percent>', 'error threshold of every phase (failed ÷ phase >) that pauses the rollout')
    .option('--min-executed <n>', 'devices that must finish before a phase is judged')
    .option('--soak <seconds>', 'time a phase must stay successful before the next starts')
    .option('--approval', 'every phase after the first waits for `flotilla rollout approve`')
    .option('--max-concurrent <n>', 'most devices in flight at once')
    .option('--rate <perMinute>', 'most new offers per minute')
    .option('--timeout <seconds>', 'per-device time from offer to a final state')
    .option('--retries <n>', 're-offers after a failure or a timeout')
    .option('--auto-rollback', 'on an error pause or abort, give updated devices their previous release back')
    .option(
      '--allow-downgrade',
      'let the rollout take devices on a newer version down to this release (never below their security floor; needs --reason)',
    )
    .option('--reason <text>', 'why the downgrade is needed (audited)')
    .option('--hardware <ids>', 'target hardware ids (comma list)')
    .option('--tag <tag>', 'target devices with this tag (repeatable: all must match)', collect)
    .option('--group <groups>', 'target device groups (comma list)')
    .option('--from-version <versions>', 'target devices running these versions (comma list)')
    .option('--channel <channels>', 'target devices on these channels (comma list)')
    .option('--device <ids>', 'target these device ids (repeatable or comma list)', collect)
    .option('--dynamic', 'matching devices that appear later join the running rollout')
    .option('--start-at <time>', 'do not start before this time (ISO-8601)')
    .option('--dry-run', 'print the request without sending it')
    .option('--json', 'print JSON')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const json = wantsJson(cmd);
      const base = typeof o.policy === 'string' ? await readPolicyFile(o.policy) : {};
      const body = {
        ...(o.name ? { name: String(o.name) } : {}),
        release: String(o.release),
        policy: policyFromFlags(base, o),
      };
      if (o.dryRun) {
        printResult(json, { ok: true, dryRun: true, request: body }, () => JSON.stringify(body, null, 2));
        return;
      }
      const r = await clientFor(cmd).createRollout(body);
      printResult(json, { ok: true, rollout: r }, () => `created ${renderRollout(r)}`);
    });

  rollout
    .command('list')
    .description('list rollouts')
    .option('--json', 'print JSON')
    .action(async (_o: unknown, cmd: Command) => {
      const { items } = await clientFor(cmd).listRollouts();
      printResult(wantsJson(cmd), { ok: true, rollouts: items }, () =>
        items.length === 0
          ? 'no rollouts'
          : table(
              ['ID', 'NAME', 'RELEASE', 'STATUS', 'PHASE', 'HEALTHY', 'FAILED', 'CREATED'],
              items.map((r) => [
                r.id,
                r.name,
                r.release,
                r.status,
                r.summary ? `${r.summary.currentPhase + 1}/${r.summary.phases.length}` : null,
                r.summary ? `${r.summary.totals.healthy}/${r.summary.totals.devices}` : null,
                r.summary?.totals.failed,
                when(r.created),
              ]),
            ),
      );
    });

  rollout
    .command('status')
    .alias('show')
    .description(
      'show one rollout and its phase progress (also `rollout show`); --watch follows it live until it ends',
    )
    .argument('<id>', 'rollout id')
    .option('--watch', 'follow live (server events, polling as a fallback); ends when the rollout does')
    .option('--interval <seconds>', 'polling interval while watching', '2')
    .option('--json', 'print JSON (with --watch: one line per change)')
    .action(async (id: string, o: { watch?: boolean; interval: string }, cmd: Command) => {
      const json = wantsJson(cmd);
      const client = clientFor(cmd);
      if (!o.watch) {
        const r = await client.getRollout(id);
        printResult(json, { ok: true, rollout: r }, () => renderRollout(r));
        return;
      }
      await watchRollout(client, id, json, Math.max(0.2, Number(o.interval) || 2));
    });

  const action = (
    name: 'pause' | 'resume' | 'abort',
    description: string,
    extra: (c: Command) => Command,
    body: (o: Record<string, unknown>) => Record<string, unknown>,
  ) =>
    extra(rollout.command(name).description(description).argument('<id>', 'rollout id'))
      .option('--json', 'print JSON')
      .action(async (id: string, o: Record<string, unknown>, cmd: Command) => {
        const r = await clientFor(cmd).rolloutAction(id, name, body(o));
        printResult(wantsJson(cmd), { ok: true, rollout: r }, () => renderRollout(r));
      });

  action(
    'pause',
    'stop new offers (devices in flight carry on)',
    (c) => c.option('--note <text>', 'why, for the audit log'),
    (o) => (o.note ? { note: String(o.note) } : {}),
  );
  action(
    'resume',
    'continue a paused rollout (after an error pause only new failures count)',
    (c) => c,
    () => ({}),
  );
  action(
    'abort',
    'end the rollout: pending devices are cancelled',
    (c) => c.option('--rollback', 'also give devices it updated their previous release back'),
    (o) => ({ rollback: Boolean(o.rollback) }),
  );

  rollout
    .command('approve')
    .description('approve the phase waiting for approval (or --phase N ahead of time)')
    .argument('<id>', 'rollout id')
    .option('--phase <n>', 'phase number, 1-based')
    .option('--json', 'print JSON')
    .action(async (id: string, o: { phase?: string }, cmd: Command) => {
      let body: Record<string, unknown> = {};
      if (o.phase !== undefined) {
        const n = Number(o.phase);
        if (!Number.isInteger(n) || n < 1) throw new CliError('FLOTILLA_ERR_CLI_USAGE', `--phase ${o.phase}`);
        body = { phase: n - 1 };
      }
      const r = await clientFor(cmd).rolloutAction(id, 'approve', body);
      printResult(wantsJson(cmd), { ok: true, rollout: r }, () => renderRollout(r));
    });
}

/**
 * Follows a rollout: re-reads it whenever the server's event stream mentions it (and at least
 * every `interval` seconds, so a missing or broken stream only slows it down), prints each change,
 * and returns once the rollout completed or was aborted.
 */
async function watchRollout(
  client: ReturnType<typeof clientFor>,
  id: string,
  json: boolean,
  intervalSeconds: number,
): Promise<void> {
  const stream = new AbortController();
  const waker = createWaker();
  void client
    .streamEvents(stream.signal, (_type, data) => {
      const text = JSON.stringify(data ?? '');
      if (text.includes(id)) waker.wake();
    })
    .catch(() => {}); // polling carries on without the stream
  const bar = createProgress('healthy', 1, { json });
  let last = '';
  try {
    for (;;) {
      let r: RolloutInfo;
      try {
        r = await client.getRollout(id);
      } catch (err) {
        // A restarting server is not the end of a watch; anything else is.
        if (
          !(
            err instanceof ApiClientError &&
            err.httpStatus === 0 &&
            err.code !== 'FLOTILLA_ERR_CLI_SERVER_URL'
          )
        )
          throw err;
        await waker.wait(intervalSeconds * 1000);
        continue;
      }
      const view = json ? JSON.stringify({ ok: true, rollout: r }) : renderRollout(r);
      if (view !== last) {
        last = view;
        if (r.summary) bar.update(r.summary.totals.healthy, r.summary.totals.devices);
        if (json) process.stdout.write(`${view}\n`);
        else process.stdout.write(`${new Date().toISOString()}\n${view}\n\n`);
      }
      if (FINISHED.has(r.status)) return;
      await waker.wait(intervalSeconds * 1000);
    }
  } finally {
    bar.stop();
    stream.abort();
  }
}

/** A sleep that an event can cut short. */
function createWaker(): { wait(ms: number): Promise<void>; wake(): void } {
  let wake: (() => void) | null = null;
  return {
    wait(ms) {
      return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    },
    wake() {
      wake?.();
    },
  };
}
