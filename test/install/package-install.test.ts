import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * What a new operator does on a fresh machine: `pnpm package`, then `npm install -g --prefix DIR
 * dist-packages/*.tgz` (a temporary prefix and npm cache: @flotilla/* must come from the tarballs,
 * everything else from the npm registry, better-sqlite3 compiled there), then the three commands
 * from a directory that is not the checkout. Slow (npm compiles better-sqlite3): one file, one
 * install, a generous budget.
 */
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIST = join(ROOT, 'dist-packages');
const INSTALL_BUDGET_MS = 15 * 60_000;
/** The prefix docs/install.md installs into; the shipped systemd units run commands from its bin/. */
const DOCUMENTED_PREFIX = '/usr/local';

let work: string;
let prefix: string;
let cwd: string;
const children: ChildProcess[] = [];

const bin = (name: string) => join(prefix, 'bin', name);
/** Runs an installed command from the temp cwd with a PATH that has no checkout in it. */
const runInstalled = (name: string, args: string[]) =>
  run(bin(name), args, {
    cwd,
    timeout: 120_000,
    env: { PATH: `${join(prefix, 'bin')}:${process.env.PATH}`, HOME: work },
  });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'flotilla-install-'));
  prefix = join(work, 'prefix');
  cwd = join(work, 'elsewhere');
  await mkdir(cwd);
  await run('npx', ['-y', 'pnpm@12.4.2', 'package'], { cwd: ROOT, timeout: 300_000 });
  const tarballs = readdirSync(DIST)
    .filter((n) => n.endsWith('.tgz'))
    .map((n) => join(DIST, n));
  await run(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--cache',
      join(work, 'npm-cache'),
      '--no-audit',
      '--no-fund',
      '--loglevel',
      'error',
      ...tarballs,
    ],
    {
      cwd,
      timeout: INSTALL_BUDGET_MS,
      env: { ...process.env, HOME: work, npm_config_userconfig: join(work, 'npmrc') },
    },
  );
}, INSTALL_BUDGET_MS + 300_000);

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  if (work) await rm(work, { recursive: true, force: true });
});

describe('installed from the tarballs of `pnpm package`', () => {
  it('gives flotilla, flotilla-agent and flotilla-sim in DIR/bin', () => {
    for (const name of ['flotilla', 'flotilla-agent', 'flotilla-sim'])
      expect(existsSync(bin(name))).toBe(true);
  });

  it('resolves every @flotilla/* dependency from the tarballs, none from the registry', () => {
    const scope = join(prefix, 'lib', 'node_modules', '@flotilla');
    const installed = readdirSync(scope).sort();
    expect(installed).toEqual(['agent', 'cli', 'delta', 'fleet-simulator', 'image', 'protocol', 'server']);
    for (const name of installed) {
      const pkg = JSON.parse(readFileSync(join(scope, name, 'package.json'), 'utf8'));
      expect(JSON.stringify(pkg.dependencies ?? {})).not.toContain('workspace:');
      // nothing nested: a nested @flotilla copy would have come from somewhere else
      expect(existsSync(join(scope, name, 'node_modules', '@flotilla'))).toBe(false);
    }
  });

  it('runs flotilla --help and flotilla keys init outside the checkout', async () => {
    const help = await runInstalled('flotilla', ['--help']);
    expect(help.stdout).toContain('Usage: flotilla');
    await runInstalled('flotilla', ['keys', 'init', '--dir', 'keys']);
    const root = JSON.parse(readFileSync(join(cwd, 'keys', 'root.json'), 'utf8'));
    expect(root.signed._type).toBe('root');
  });

  it('runs flotilla-agent --help and flotilla-sim --help outside the checkout', async () => {
    expect((await runInstalled('flotilla-agent', ['--help'])).stdout).toContain('flotilla-agent');
    expect((await runInstalled('flotilla-sim', ['--help'])).stdout).toContain('--server URL');
  });

  it('ships systemd units whose ExecStart is DOCUMENTED_PREFIX/bin/<command>, a command the install gives', async () => {
    const scope = join(prefix, 'lib', 'node_modules', '@flotilla');
    const units = readdirSync(scope).flatMap((pkg) => {
      const dir = join(scope, pkg, 'systemd');
      return existsSync(dir)
        ? readdirSync(dir)
            .filter((n) => n.endsWith('.service'))
            .map((n) => join(dir, n))
        : [];
    });
    expect(units.map((u) => u.slice(scope.length + 1)).sort()).toEqual([
      'agent/systemd/flotilla-agent.service',
      'server/systemd/flotilla-server.service',
    ]);
    for (const unit of units) {
      const execStart = readFileSync(unit, 'utf8').match(/^ExecStart=(.+)$/m)?.[1];
      const [program, ...args] = (execStart ?? '').trim().split(/\s+/);
      expect(program, unit).toMatch(new RegExp(`^${DOCUMENTED_PREFIX}/bin/[a-z-]+$`));
      const name = program!.slice(`${DOCUMENTED_PREFIX}/bin/`.length);
      expect(existsSync(bin(name)), `${unit}: ${name} is not in DIR/bin`).toBe(true);
      // The unit's own command line, with its config pointed at a missing file: the command must
      // take it as the service command (a config error), not answer with its usage.
      const configAt = args.indexOf('--config');
      expect(configAt, `${unit}: no --config`).toBeGreaterThan(0);
      const missing = join(work, `missing-${name}.json`);
      args[configAt + 1] = missing;
      const failed = await runInstalled(name, args).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(failed.code, unit).not.toBe(0);
      expect(failed.stderr, unit).toMatch(/FLOTILLA_ERR_[A-Z_]*CONFIG_NOT_FOUND/);
      expect(failed.stderr, unit).toContain(missing);
    }
  });

  it('starts flotilla server with the natively built better-sqlite3 and serves /healthz', async () => {
    const child = spawn(
      bin('flotilla'),
      ['server', '--data-dir', 'data', '--port', '0', '--mqtt-port', '0', '--json', '--log-level', 'warn'],
      { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: work } },
    );
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (c) => {
      out += c;
    });
    child.stderr!.on('data', (c) => {
      err += c;
    });
    const summary = await new Promise<{ api: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no server summary; stderr: ${err}`)), 120_000);
      const check = () => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) {
          clearTimeout(timer);
          resolve(JSON.parse(line));
        }
      };
      child.stdout!.on('data', check);
      child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
    });
    const health = await fetch(`${summary.api}/healthz`);
    expect(health.status).toBe(200);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  });
});
