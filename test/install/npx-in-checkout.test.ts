import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * Inside the checkout `npx flotilla …` runs the workspace's own commands: the root package.json
 * depends on the CLI, agent and simulator packages, so node_modules/.bin has their bins.
 * `--no-install` makes npx fail instead of looking in the registry (no @flotilla package is there).
 */
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('npx in the checkout', () => {
  it.each([
    ['flotilla', 'Usage: flotilla'],
    ['flotilla-agent', 'flotilla-agent — the Flotilla device agent'],
    ['flotilla-sim', 'flotilla-sim'],
  ])(
    'npx --no-install %s --help exits 0 from the repository root',
    async (name, expected) => {
      const { stdout } = await run('npx', ['--no-install', name, '--help'], { cwd: ROOT, timeout: 120_000 });
      expect(stdout).toContain(expected);
    },
    150_000,
  );
});
