import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Runs the compiled CLI exactly as users do (plain node, no TypeScript loader). */
export const CLI = fileURLToPath(new URL('../dist/bin/flotilla.js', import.meta.url));

export function runFlotilla(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    json: () => JSON.parse(r.stdout.trim().split('\n').at(-1) ?? 'null'),
  };
}
