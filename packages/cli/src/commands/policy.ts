import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ApiClientError, addServerOptions, clientFor, wantsJson } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';

/** `flotilla policy get|set FILE`: the server's policy document (JSON), versioned and audited. */
export function registerPolicyCommands(program: Command): void {
  addServerOptions(program);
  const policy = program.command('policy').description('vulnerability and promotion policy (policy as code)');

  policy
    .command('get')
    .alias('show')
    .description('print the current policy document and its version')
    .option('--json', 'print JSON')
    .action(async (_o: unknown, cmd: Command) => {
      const p = await clientFor(cmd).request<{ version: number; document: unknown }>('GET', 'policy');
      printResult(
        wantsJson(cmd),
        { ok: true, policy: p },
        () =>
          `# policy version ${p.version}${p.version === 0 ? ' (default)' : ''}\n${JSON.stringify(p.document, null, 2)}`,
      );
    });

  policy
    .command('set')
    .description('store FILE (JSON) as the next policy version (admin token)')
    .argument('<file>', 'policy document (JSON)')
    .option('--json', 'print JSON')
    .action(async (file: string, _o: unknown, cmd: Command) => {
      const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${file}: ${err.code ?? err.message}`, { cause: err });
      });
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (err) {
        throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${file}: not JSON (${(err as Error).message})`, {
          cause: err,
        });
      }
      const p = await clientFor(cmd)
        .request<{ version: number }>('PUT', 'policy', doc)
        .catch((err: unknown) => {
          throw namingFile(err, file);
        });
      printResult(wantsJson(cmd), { ok: true, policy: p }, () => `policy version ${p.version} stored`);
    });
}

/**
 * The server checks the document and names the field, not the file it came from: its refusal is
 * passed on with FILE in front (same code, hint and status).
 */
function namingFile(err: unknown, file: string): unknown {
  if (!(err instanceof ApiClientError) || err.code !== 'FLOTILLA_ERR_POLICY_INVALID') return err;
  // The server names its own source ('policy: field /…'): the file takes its place.
  const message = err.message.replace(': policy: field ', ': field ');
  return ApiClientError.relayed(err.code, `${file}: ${message}`, err.hint, err.httpStatus);
}
