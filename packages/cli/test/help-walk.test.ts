import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../src/main.js';
import { runFlotilla } from './run-cli.js';

// Every command users can find from `flotilla --help`, followed down through each group's own
// `--help` with the compiled CLI: each one answers `--help`, and each that prints a result takes
// `--json` (scripts read every command the same way), unless it is listed here with the reason.
const NO_JSON: Record<string, string> = {
  'image cat': 'writes the raw filesystem image bytes to stdout (for a pipe); there is no result to describe',
};

/** The sub-command names in a help text's `Commands:` section (the first name of `a|b`), without `help`. */
function listedCommands(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}([a-z][a-z0-9-]*)(?:\|[a-z0-9-]+)*(?= |$)/gm)]
    .map((m) => m[1]!)
    .filter((name) => name !== 'help');
}

/** Every command path of the program itself, to check that help shows them all. */
function programPaths(cmd: Command, prefix: string[] = []): string[] {
  return cmd.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [path.join(' '), ...programPaths(sub, path)];
  });
}

describe('flotilla --help, walked to every command', () => {
  it('every command answers --help, and every leaf command has --json or a listed reason', async () => {
    const visited: string[] = [];
    const withoutJson: string[] = [];
    const queue: string[][] = [[]];
    // Bounded: the program has well under 200 commands.
    for (let i = 0; i < queue.length && i < 200; i++) {
      const path = queue[i]!;
      const r = runFlotilla([...path, '--help']);
      const name = path.join(' ');
      expect(r.code, `flotilla ${name} --help: ${r.stderr}`).toBe(0);
      // A command with an alias shows as `status|show`.
      expect(r.stdout, name).toMatch(new RegExp(`^Usage: flotilla ${name ? `${name}(\\|[a-z-]+)* ` : ''}`));
      const subs = listedCommands(r.stdout);
      if (path.length > 0) visited.push(name);
      if (subs.length > 0) {
        for (const sub of subs) queue.push([...path, sub]);
        continue;
      }
      if (!/^\s+--json\b/m.test(r.stdout)) withoutJson.push(name);
    }
    expect(visited.sort()).toEqual(programPaths(await buildProgram()).sort());
    expect(visited.length).toBeGreaterThan(50);
    expect(withoutJson.sort()).toEqual(Object.keys(NO_JSON).sort());
    // A listed exception is still a real command (the list cannot go stale).
    for (const name of Object.keys(NO_JSON)) expect(visited).toContain(name);
  }, 240_000);

  it('finds the commands of a help text, aliases and wrapped descriptions included', () => {
    const help = [
      'Usage: flotilla rollout [options] [command]',
      '',
      'Commands:',
      '  create [options]            start a rollout',
      '  status|show [options] <id>  show one rollout and its phase progress (also',
      '                              `rollout show`); --watch follows it',
      '  help [command]              display help for command',
    ].join('\n');
    expect(listedCommands(help)).toEqual(['create', 'status']);
    expect(listedCommands('Usage: flotilla flash [options]\n\nOptions:\n  --json  print JSON')).toEqual([]);
  });
});
