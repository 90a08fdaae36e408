import { Command, CommanderError } from 'commander';
import { commandGroups } from './commands/index.js';
import { reportError } from './output.js';

/** Builds the `flotilla` program; every command group registers itself from `commands/`. */
export function buildProgram(): Command {
  const program = new Command('flotilla')
    .description('Flotilla: signed A/B images, binary deltas and staged fleet rollouts')
    .showHelpAfterError()
    .exitOverride();
  for (const register of commandGroups) register(program);
  return program;
}

/** Runs the CLI and returns the process exit code (0 success, 1 failure, 2 usage error). */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    return reportError(err, argv.includes('--json'));
  }
}
