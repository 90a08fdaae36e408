import { Command, CommanderError } from 'commander';
import { commandGroups } from './commands/index.js';
import { CliError } from './errors.js';
import { reportError } from './output.js';

/**
 * Builds the `flotilla` program with the named command groups (all of them when none is named,
 * e.g. for `--help`); every group registers itself from `commands/`.
 */
export async function buildProgram(groups: string[] = Object.keys(commandGroups)): Promise<Command> {
  const program = new Command('flotilla')
    .description('Flotilla: signed A/B images, binary deltas and staged fleet rollouts')
    .showHelpAfterError()
    .exitOverride();
  for (const name of groups) (await commandGroups[name]!())(program);
  return program;
}

/** Runs the CLI and returns the process exit code (0 success, 1 failure, 2 usage error). */
export async function runCli(argv: string[]): Promise<number> {
  // The first argument naming a group picks it (global options such as --server may come first).
  const group = argv.slice(2).find((a) => Object.hasOwn(commandGroups, a));
  try {
    const program = await buildProgram(group ? [group] : undefined);
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      // commander has printed the message and the help on stderr; a script asked for JSON gets
      // the same coded error shape as any other failure (exit code 2 still says "usage").
      if (argv.includes('--json')) reportError(usageError(err.message), true);
      return 2;
    }
    return reportError(err, argv.includes('--json'));
  }
}

/** commander's "error: missing required argument 'id'" as FLOTILLA_ERR_CLI_USAGE. */
function usageError(message: string): CliError {
  return new CliError('FLOTILLA_ERR_CLI_USAGE', message.replace(/^error: /, ''));
}
