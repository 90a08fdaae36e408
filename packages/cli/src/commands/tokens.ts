import type { Command } from 'commander';
import { addServerOptions, clientFor, type TokenInfo, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';

const ROLES = ['viewer', 'operator', 'admin'];

function roleArg(role: string): string {
  if (!ROLES.includes(role)) throw new CliError('FLOTILLA_ERR_CLI_ROLE', `--role ${role}`);
  return role;
}

const state = (t: TokenInfo) => (t.revoked ? `revoked ${when(t.revoked)}` : 'active');

function renderToken(t: TokenInfo): string {
  return [
    `token ${t.id} "${t.name}" (${t.role}, ${state(t)})`,
    `  created: ${when(t.created)}`,
    `  last used: ${when(t.lastUsed)}`,
  ].join('\n');
}

/** `flotilla tokens create|list|show|revoke`: operator API tokens (admin token needed; all audited). */
export function registerTokensCommands(program: Command): void {
  addServerOptions(program);
  const tokens = program
    .command('tokens')
    .description('create, list and revoke operator API tokens (needs an admin token; audited)');

  tokens
    .command('create')
    .description('create a token with a role; its secret is printed once and only its hash is kept')
    .requiredOption(
      '--role <role>',
      'viewer (reads), operator (also acts) or admin (also tokens, audit, policy)',
    )
    .requiredOption('--name <name>', 'who or what uses it (shown in the audit log as token:NAME(ID))')
    .option('--json', 'print JSON: {"ok","token":{id,name,role,created,lastUsed,revoked},"secret"}')
    .action(async (o: { role: string; name: string }, cmd: Command) => {
      const { token: secret, ...token } = await clientFor(cmd).createToken(o.name, roleArg(o.role));
      printResult(wantsJson(cmd), { ok: true, token, secret }, () =>
        [
          `created ${renderToken(token)}`,
          `  secret (shown only now; keep it safe, e.g. FLOTILLA_TOKEN=…):`,
          `  ${secret}`,
        ].join('\n'),
      );
    });

  tokens
    .command('list')
    .description('list tokens, revoked ones included (never their secrets)')
    .option('--role <role>', 'only tokens with this role')
    .option('--active', 'only tokens not revoked')
    .option('--json', 'print JSON')
    .action(async (o: { role?: string; active?: boolean }, cmd: Command) => {
      const role = o.role === undefined ? undefined : roleArg(o.role);
      const { items } = await clientFor(cmd).listTokens();
      const shown = items.filter((t) => (!role || t.role === role) && (!o.active || !t.revoked));
      printResult(wantsJson(cmd), { ok: true, tokens: shown }, () =>
        shown.length === 0
          ? 'no tokens'
          : table(
              ['ID', 'NAME', 'ROLE', 'STATE', 'CREATED', 'LAST USED'],
              shown.map((t) => [t.id, t.name, t.role, state(t), when(t.created), when(t.lastUsed)]),
            ),
      );
    });

  tokens
    .command('show')
    .description('show one token (never its secret)')
    .argument('<id>', 'token id (tok_…)')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const token = (await clientFor(cmd).listTokens()).items.find((t) => t.id === id);
      if (!token) throw new CliError('FLOTILLA_ERR_CLI_NOT_FOUND', `token ${id}`);
      printResult(wantsJson(cmd), { ok: true, token }, () => renderToken(token));
    });

  tokens
    .command('revoke')
    .description('revoke a token: it stops working at once (the entry stays, marked revoked)')
    .argument('<id>', 'token id (tok_…)')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const r = await clientFor(cmd).revokeToken(id);
      printResult(wantsJson(cmd), { ok: true, ...r }, () => `revoked token ${r.id}`);
    });
}
