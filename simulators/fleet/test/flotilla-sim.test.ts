import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareWorld, type WorldBase } from '../src/world.js';

/**
 * `flotilla-sim --server URL --token T --devices N` (the compiled bin, as installed) against a
 * real server started here with a release on it: the devices register and come online.
 */
const BIN = fileURLToPath(new URL('../dist/bin/flotilla-sim.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
let world: WorldBase;
let sim: ChildProcess | undefined;

beforeAll(async () => {
  await promisify(execFile)('npx', ['tsc', '-b', 'simulators/fleet'], { cwd: ROOT, timeout: 120_000 });
  world = await prepareWorld({ size: 'light' });
}, 180_000);
afterAll(async () => {
  sim?.kill('SIGKILL');
  await world?.close();
});

async function until(what: string, check: () => Promise<boolean> | boolean, budgetMs = 90_000) {
  const end = Date.now() + budgetMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('flotilla-sim', () => {
  it('attaches N simulated devices to a running server: they register and come online, and stop on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [BIN, '--server', world.server.apiUrl, '--devices', '3', '--prefix', 'attached', '--json'],
      { env: { ...process.env, FLOTILLA_TOKEN: world.server.token }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    sim = child;
    let out = '';
    let err = '';
    child.stdout!.on('data', (c) => {
      out += c;
    });
    child.stderr!.on('data', (c) => {
      err += c;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await until('the simulator summary', () => {
      if (child.exitCode !== null) throw new Error(`flotilla-sim exited ${child.exitCode}: ${err}`);
      return out.includes('\n');
    });
    expect(JSON.parse(out.trim())).toMatchObject({
      ok: true,
      devices: 3,
      first: 'attached-0001',
      release: '1.0.0',
    });
    await until('3 devices online', async () => (await world.server.onlineCount()) >= 3);
    const versions = await world.server.deviceVersions();
    expect([...versions.keys()].filter((id) => id.startsWith('attached-')).sort()).toEqual([
      'attached-0001',
      'attached-0002',
      'attached-0003',
    ]);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await until('the devices offline', async () => (await world.server.onlineCount()) === 0);
  });

  it('refuses without --server, with a code and exit 2', async () => {
    const { FLOTILLA_SERVER: _s, FLOTILLA_TOKEN: _t, ...env } = process.env;
    const r = await promisify(execFile)(process.execPath, [BIN, '--devices', '2'], { env }).catch((e) => e);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^error FLOTILLA_ERR_SIM_BAD_ARGUMENT: .*--server URL \(or \$FLOTILLA_SERVER\) is required/,
    );
    // $FLOTILLA_SERVER stands for --server, as it does for `flotilla`: the token is what is missing then.
    const withEnv = await promisify(execFile)(process.execPath, [BIN, '--devices', '2'], {
      env: { ...env, FLOTILLA_SERVER: 'http://127.0.0.1:9' },
    }).catch((e) => e);
    expect(withEnv.code).toBe(2);
    expect(withEnv.stderr).toMatch(/--token \(or \$FLOTILLA_TOKEN\) is required/);
  });
});
