import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../src/main.js';
import { runFlotilla } from './run-cli.js';

// Every command users can find from `flotilla --help`, followed down through each group's own
// `--help` with the compiled CLI: each one answers `--help`, and each that prints a result takes
// `--json` (scripts read every command the same way), unless it is listed here with the reason.
const NO_JSON: Record<string, string> = {
  'image cat': 'writes the raw filesystem image bytes to stdout (for a pipe); there is no result to describe',
};

// Commands the walk does not run: they start something that keeps running until stopped. (It
// passes no flag but --json, so `rollout status --watch` is never started; the agent's `run` and
// the simulator are other programs, flotilla-agent and flotilla-sim.)
const NOT_RUN: Record<string, string> = {
  server: 'starts the API and MQTT server and runs until stopped (server-command.test.ts starts it)',
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

interface HelpWalk {
  visited: string[];
  leaves: string[][];
  withoutJson: string[];
}

/** `flotilla --help`, then each listed command's `--help`, breadth first. */
function walkHelp(): HelpWalk {
  const walk: HelpWalk = { visited: [], leaves: [], withoutJson: [] };
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
    if (path.length > 0) walk.visited.push(name);
    if (subs.length > 0) {
      for (const sub of subs) queue.push([...path, sub]);
      continue;
    }
    walk.leaves.push(path);
    if (!/^\s+--json\b/m.test(r.stdout)) walk.withoutJson.push(name);
  }
  return walk;
}

let walked: HelpWalk | undefined;
/** One walk for both tests (either may run alone with -t). */
const helpWalk = () => {
  walked ??= walkHelp();
  return walked;
};

/** A loopback port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// A Node error escaping to the top: a class name or a stack frame.
const CRASH = /\b(TypeError|ReferenceError|RangeError|SyntaxError)\b|^\s+at .+:\d+:\d+\)?$/m;

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('flotilla --help, walked to every command', () => {
  it('every command answers --help, and every leaf command has --json or a listed reason', async () => {
    const { visited, withoutJson } = helpWalk();
    expect(visited.sort()).toEqual(programPaths(await buildProgram()).sort());
    expect(visited.length).toBeGreaterThan(50);
    expect(withoutJson.sort()).toEqual(Object.keys(NO_JSON).sort());
    // A listed exception is still a real command (the list cannot go stale).
    for (const name of Object.keys(NO_JSON)) expect(visited).toContain(name);
  }, 240_000);

  it('runs every leaf command once with no arguments and --json: a coded result, never a crash', async () => {
    const { leaves } = helpWalk();
    // No token, a server that is not there, HOME and config dirs of its own: nothing real is touched.
    const home = await mkdtemp(join(tmpdir(), 'flotilla-walk-'));
    dirs.push(home);
    const env = {
      FLOTILLA_SERVER: `http://127.0.0.1:${await closedPort()}`,
      FLOTILLA_TOKEN: undefined,
      HOME: home,
      XDG_CONFIG_HOME: join(home, '.config'),
      XDG_DATA_HOME: join(home, '.local', 'share'),
    };
    const ran: string[] = [];
    for (const path of leaves) {
      const name = path.join(' ');
      if (Object.hasOwn(NOT_RUN, name)) continue;
      const json = !Object.hasOwn(NO_JSON, name);
      const r = runFlotilla(json ? [...path, '--json'] : path, { cwd: home, env });
      ran.push(name);
      const what = `flotilla ${name}${json ? ' --json' : ''} (exit ${r.code}): ${r.stdout}${r.stderr}`;
      // null: killed by the runner's timeout, i.e. it hung
      expect(r.code, what).not.toBeNull();
      expect(r.stderr, what).not.toMatch(CRASH);
      if (!json) continue;
      const out = r.json();
      expect(out, what).toBeTypeOf('object');
      expect(Array.isArray(out), what).toBe(false);
      if (r.code === 0) continue;
      expect(out?.error?.code, what).toMatch(/^FLOTILLA_ERR_/);
      // INTERNAL is what an error nobody coded becomes
      expect(out.error.code, what).not.toBe('FLOTILLA_ERR_INTERNAL');
    }
    expect(ran.length).toBe(leaves.length - Object.keys(NOT_RUN).length);
    for (const name of Object.keys(NOT_RUN)) expect(leaves.map((p) => p.join(' '))).toContain(name);
  }, 400_000);

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
