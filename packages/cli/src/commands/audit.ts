import type { Command } from 'commander';
import { type AuditEntryInfo, addServerOptions, clientFor, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';
import { countArg, timeArg } from '../time-arg.js';

const MAX_PAGE = 1000;

function renderEntry(e: AuditEntryInfo): string {
  return [
    `audit entry ${e.id}: ${e.action}`,
    `  at: ${when(e.ts)}`,
    `  actor: ${e.actor}`,
    `  target: ${e.target ?? '–'}`,
    `  detail: ${JSON.stringify(e.detail)}`,
  ].join('\n');
}

/** `flotilla audit list|show`: who changed what, from the server's append-only audit log (admin). */
export function registerAuditCommands(program: Command): void {
  addServerOptions(program);
  const audit = program.command('audit').description("read the server's audit log (needs an admin token)");

  audit
    .command('list')
    .description('audit entries, newest first; the filters combine')
    .option(
      '--actor <actor>',
      "who: as recorded (token:NAME(ID), device:ID, server), or a token's name or id",
    )
    .option('--action <action>', 'what: an action (token.create), or a prefix ending in * (rollout.*)')
    .option('--target <id>', 'on which object (a device, rollout, release or token id)')
    .option(
      '--since <time>',
      'from this time: ISO 8601 (2026-01-31, 2026-01-31T12:00:00Z) or ago (30m, 12h, 7d)',
    )
    .option('--until <time>', 'before this time (same forms as --since)')
    .option('--before <id>', 'older than this entry id (the next page: the last id shown)')
    .option('--limit <n>', `at most this many (1–${MAX_PAGE})`, '100')
    .option('--json', 'print JSON: {"ok","entries":[{id,ts,actor,action,target,detail}]}')
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      const { items } = await clientFor(cmd).listAudit({
        actor: o.actor,
        action: o.action,
        target: o.target,
        since: o.since === undefined ? undefined : timeArg('--since', o.since),
        until: o.until === undefined ? undefined : timeArg('--until', o.until),
        before: o.before === undefined ? undefined : countArg('--before', o.before, Number.MAX_SAFE_INTEGER),
        limit: countArg('--limit', o.limit ?? '100', MAX_PAGE),
      });
      printResult(wantsJson(cmd), { ok: true, entries: items }, () =>
        items.length === 0
          ? 'no audit entries match'
          : table(
              ['ID', 'TIME', 'ACTOR', 'ACTION', 'TARGET'],
              items.map((e) => [e.id, when(e.ts), e.actor, e.action, e.target]),
            ),
      );
    });

  audit
    .command('show')
    .description('one audit entry with its detail')
    .argument('<id>', 'audit entry id (the ID column of `audit list`)')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const n = countArg('id', id, Number.MAX_SAFE_INTEGER);
      const entry = (await clientFor(cmd).listAudit({ before: n + 1, limit: 1 })).items.find(
        (e) => e.id === n,
      );
      if (!entry) throw new CliError('FLOTILLA_ERR_CLI_NOT_FOUND', `audit entry ${id}`);
      printResult(wantsJson(cmd), { ok: true, entry }, () => renderEntry(entry));
    });
}
