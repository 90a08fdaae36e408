import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Runs the compiled CLI exactly as users do (plain node, no TypeScript loader). */
export const CLI = fileURLToPath(new URL('../dist/bin/flotilla.js', import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON output
  json: () => any;
}

const lastJsonLine = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null');

export function runFlotilla(
  args: string[],
  // an `undefined` value removes that variable from the CLI's environment
  opts: { cwd?: string; env?: Record<string, string | undefined> } = {},
): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => lastJsonLine(r.stdout) };
}

export interface CliProcess {
  child: ChildProcess;
  /** What the CLI has printed so far. */
  output: { stdout: string; stderr: string };
  /** Settles when the CLI exits (SIGKILLed after `timeoutMs`). */
  done: Promise<CliRun>;
}

/**
 * Starts the CLI without blocking this process, so a server in this process can answer it and a
 * test can read its output while it runs.
 */
export function startFlotilla(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 30_000,
): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout!.on('data', (c) => {
    output.stdout += c;
  });
  child.stderr!.on('data', (c) => {
    output.stderr += c;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<CliRun>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      const { stdout, stderr } = output;
      resolve({ code, stdout, stderr, json: () => lastJsonLine(stdout) });
    }),
  );
  return { child, output, done };
}
