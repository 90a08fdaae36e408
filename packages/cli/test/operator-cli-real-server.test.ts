import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningServer, startServer } from '@flotilla/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './run-cli.js';

// The operator CLI against the real server (HTTP API on loopback, no MQTT listener): the
// contract between the two, not the server's semantics (tested in packages/server).

const TOKEN = 'TEST-ONLY-admin-token-0123456789abcdef0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-real-'));
let server: RunningServer;

beforeAll(async () => {
  server = await startServer({
    dataDir: dir,
    adminToken: TOKEN,
    port: 0,
    mqttPort: null,
    logLevel: 'silent',
  });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON output
  json: () => any;
}

function flotilla(args: string[], env: Record<string, string> = {}) {
  return new Promise<CliRun>((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, FLOTILLA_SERVER: server.addresses.api, FLOTILLA_TOKEN: TOKEN, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, json: () => JSON.parse(stdout.trim().split('\n').at(-1) ?? 'null') });
    });
  });
}

describe('operator CLI against the real server', () => {
  it('lists (empty) rollouts, releases and devices', async () => {
    for (const group of ['rollout', 'release', 'devices']) {
      const r = await flotilla([group, 'list', '--json']);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.json().ok).toBe(true);
    }
  });

  it('a wrong token is refused with the server code', async () => {
    const r = await flotilla(['rollout', 'list', '--json'], { FLOTILLA_TOKEN: 'wrong' });
    expect(r.code).toBe(1);
    expect(r.json().error.code).toMatch(/^FLOTILLA_ERR_SERVER_(UNAUTHENTICATED|FORBIDDEN)$/);
  });

  it('an unknown rollout is FLOTILLA_ERR_SERVER_NOT_FOUND', async () => {
    const r = await flotilla(['rollout', 'status', 'ro_0123456789abcdef', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  });

  it('a rollout of a release the server does not have is refused with a code and hint', async () => {
    const r = await flotilla(['rollout', 'create', '--release', '9.9.9', '--phases', '1,*', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toMatch(/^FLOTILLA_ERR_/);
    expect(r.json().error.hint).toEqual(expect.any(String));
  });

  it('an invalid policy is refused by the schema before anything is stored', async () => {
    const r = await flotilla(['rollout', 'create', '--release', '1.0.0', '--error', '150', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toMatch(/^FLOTILLA_ERR_(SERVER_VALIDATION|ROLLOUT_POLICY_INVALID)$/);
    const list = await flotilla(['rollout', 'list', '--json']);
    expect(list.json().rollouts).toEqual([]);
  });
});
