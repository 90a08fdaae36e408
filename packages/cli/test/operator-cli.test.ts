import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFlotilla } from './run-cli.js';

// Transport only: what the CLI sends and how it relays answers (paths, bodies, bearer token,
// exit codes, --json shape, error codes the real server cannot be made to give on demand such as a
// non-JSON error page, the SSE-driven --watch) against a tiny HTTP stub on loopback. A stub can
// agree with the CLI on a route the server never had, so everything an operator does — release
// commands, rollout create/pause/resume/approve/abort, devices show/accept, `rollout status
// --watch` — also runs against the real server in operator-cli-real-server.test.ts, and the
// server's semantics are tested in packages/server.

interface Seen {
  method: string;
  url: string;
  auth: string | undefined;
  contentType: string | undefined;
  body: Buffer;
}

const TOKEN = 'TEST-ONLY-token';
let server: Server;
let base: string;
let seen: Seen[] = [];
let getCount = 0;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-operator-'));

function rollout(status: string, healthy: number) {
  const phases = [
    {
      index: 0,
      name: 'canary',
      total: 2,
      healthy: Math.min(2, healthy),
      failed: 0,
      inFlight: 0,
      notStarted: 0,
    },
    {
      index: 1,
      name: 'fleet',
      total: 8,
      healthy: Math.max(0, healthy - 2),
      failed: 0,
      inFlight: 1,
      notStarted: 2,
    },
  ].map((p) => ({
    ...p,
    successThreshold: 100,
    errorThreshold: 10,
    successPercent: (p.healthy / p.total) * 100,
    errorPercent: 0,
    status: 'running',
  }));
  return {
    id: 'r1',
    name: 'spring',
    release: '1.1.0',
    status,
    created: '2026-03-02T10:00:00Z',
    summary: {
      status,
      currentPhase: 1,
      pause:
        status === 'paused'
          ? { kind: 'error-threshold', at: 0, phase: 0, failed: 1, total: 2, threshold: 10 }
          : null,
      rollingBack: false,
      phases,
      totals: { devices: 10, healthy, failed: 0, inFlight: 1, notStarted: 2 },
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function route(req: IncomingMessage, res: ServerResponse, body: Buffer) {
  const url = req.url ?? '';
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    return send(res, 401, {
      error: { code: 'FLOTILLA_ERR_SERVER_UNAUTHENTICATED', message: 'no valid token', hint: 'pass a token' },
    });
  }
  const key = `${req.method} ${url.split('?')[0]}`;
  switch (key) {
    case 'GET /api/v1/rollouts':
      return send(res, 200, { items: [rollout('running', 3)], total: 1 });
    case 'GET /api/v1/rollouts/r1': {
      getCount++;
      return send(res, 200, rollout(getCount >= 3 ? 'completed' : 'running', Math.min(10, 3 * getCount)));
    }
    case 'GET /api/v1/rollouts/missing':
      return send(res, 404, {
        error: { code: 'FLOTILLA_ERR_SERVER_NOT_FOUND', message: 'no rollout missing', hint: 'check the id' },
      });
    case 'POST /api/v1/rollouts': {
      const b = JSON.parse(body.toString()) as { release: string; policy: unknown };
      return send(res, 201, { ...rollout('scheduled', 0), release: b.release, policy: b.policy });
    }
    case 'POST /api/v1/rollouts/r1/pause':
      return send(res, 200, rollout('paused', 3));
    case 'POST /api/v1/rollouts/r1/resume':
      return send(res, 409, {
        error: {
          code: 'FLOTILLA_ERR_ROLLOUT_STATE',
          message: 'the rollout cannot do this in its current state: cannot resume a running rollout',
          hint: 'check the rollout status',
        },
      });
    case 'POST /api/v1/rollouts/r1/abort':
    case 'POST /api/v1/rollouts/r1/approve':
      return send(res, 200, rollout('running', 3));
    case 'GET /api/v1/devices':
      return send(res, 200, {
        items: [{ id: 'dev-1', status: 'accepted', hardware: 'rpi4', currentVersion: '1.0.0', online: true }],
        total: 7,
      });
    case 'GET /api/v1/devices/dev-1':
      return send(res, 200, { id: 'dev-1', status: 'pending', hardware: 'rpi4', tags: ['lab'] });
    case 'POST /api/v1/devices/dev-1/accept':
      return send(res, 200, { device: { id: 'dev-1', status: 'accepted' } });
    case 'GET /api/v1/events': {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': hello\n\n');
      const t = setInterval(() => res.write(`event: rollout.updated\ndata: {"id":"r1"}\n\n`), 50);
      res.on('close', () => clearInterval(t));
      return;
    }
    case 'GET /api/v1/weird':
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<html>not json</html>');
    default:
      res.writeHead(500, { 'content-type': 'text/plain' });
      return res.end('boom');
  }
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        auth: req.headers.authorization,
        contentType: req.headers['content-type'],
        body,
      });
      route(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen = [];
  getCount = 0;
});

function flotilla(args: string[], env: Record<string, string> = {}) {
  return startFlotilla(args, { FLOTILLA_SERVER: base, FLOTILLA_TOKEN: TOKEN, ...env }).done;
}

describe('operator CLI over HTTP', () => {
  it('rollout list --json prints one object with the rollouts and sends the bearer token', async () => {
    const r = await flotilla(['rollout', 'list', '--json']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.json()).toMatchObject({ ok: true, rollouts: [{ id: 'r1', release: '1.1.0' }] });
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/api/v1/rollouts', auth: `Bearer ${TOKEN}` });
  });

  it('rollout status shows one progress bar per phase', async () => {
    const r = await flotilla(['rollout', 'status', 'r1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/canary\s+\[#{30}\]\s+2\/2 healthy/);
    expect(r.stdout).toMatch(/fleet\s+\[#{4}~{4}\.{22}\]\s+1\/8 healthy/);
  });

  it('--server and --token flags win over the environment, before or after the sub-command', async () => {
    const a = await flotilla(['--server', base, '--token', TOKEN, 'devices', 'list', '--json'], {
      FLOTILLA_SERVER: 'http://127.0.0.1:1',
      FLOTILLA_TOKEN: 'wrong',
    });
    expect(a.code).toBe(0);
    expect(a.json()).toMatchObject({ ok: true, devices: [{ id: 'dev-1' }], total: 7 });
    const b = await flotilla(['devices', 'list', '--server', base, '--token', TOKEN, '--json'], {
      FLOTILLA_SERVER: 'http://127.0.0.1:1',
    });
    expect(b.code).toBe(0);
  });

  it('a refused token exits 1 with the server code and hint', async () => {
    const r = await flotilla(['devices', 'list'], { FLOTILLA_TOKEN: 'wrong' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error FLOTILLA_ERR_SERVER_UNAUTHENTICATED: no valid token');
    expect(r.stderr).toContain('hint: pass a token');
  });

  it('a server error keeps its stable code in --json output', async () => {
    const r = await flotilla(['rollout', 'resume', 'r1', '--json']);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({
      ok: false,
      error: {
        code: 'FLOTILLA_ERR_ROLLOUT_STATE',
        message: 'the rollout cannot do this in its current state: cannot resume a running rollout',
        hint: 'check the rollout status',
      },
    });
  });

  it('a missing rollout is a 404 with its code', async () => {
    const r = await flotilla(['rollout', 'status', 'missing', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
  });

  it('an unreachable server says how to start one', async () => {
    const r = await flotilla(['rollout', 'list', '--json'], { FLOTILLA_SERVER: 'http://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({
      code: 'FLOTILLA_ERR_CLI_SERVER_UNREACHABLE',
      hint: expect.stringContaining('flotilla server'),
    });
  });

  it.each([
    ['a server URL that is not http(s)', { FLOTILLA_SERVER: 'ftp://example' }, 'FLOTILLA_ERR_CLI_SERVER_URL'],
    ['a server URL that is not a URL', { FLOTILLA_SERVER: 'not a url' }, 'FLOTILLA_ERR_CLI_SERVER_URL'],
  ])('refuses %s', async (_name, env, code) => {
    const r = await flotilla(['devices', 'list', '--json'], env);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe(code);
    expect(seen).toEqual([]);
  });

  it('a non-JSON error page becomes FLOTILLA_ERR_CLI_HTTP with the status', async () => {
    const r = await flotilla(['devices', 'show', 'nope', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error).toMatchObject({
      code: 'FLOTILLA_ERR_CLI_HTTP',
      message: expect.stringContaining('500'),
    });
  });

  it('rollout create turns flags into a policy and posts it', async () => {
    const r = await flotilla([
      'rollout',
      'create',
      '--release',
      '1.1.0',
      '--name',
      'spring',
      '--phases',
      '1,10%,*',
      '--error',
      '20',
      '--success',
      '90',
      '--approval',
      '--max-concurrent',
      '5',
      '--tag',
      'lab',
      '--tag',
      'eu',
      '--auto-rollback',
      '--dynamic',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const sent = JSON.parse(seen[0]!.body.toString());
    expect(seen[0]!.contentType).toBe('application/json');
    expect(sent).toEqual({
      name: 'spring',
      release: '1.1.0',
      policy: {
        target: { tags: ['lab', 'eu'], membership: 'dynamic' },
        phases: [
          { count: 1, successThreshold: 90, errorThreshold: 20 },
          { percent: 10, successThreshold: 90, errorThreshold: 20, requireApproval: true },
          { successThreshold: 90, errorThreshold: 20, requireApproval: true },
        ],
        maxConcurrent: 5,
        autoRollback: true,
      },
    });
    expect(r.json()).toMatchObject({ ok: true, rollout: { id: 'r1', release: '1.1.0' } });
  });

  it('rollout create merges a --policy file under the flags', async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(
      file,
      JSON.stringify({ target: { hardware: ['rpi4'] }, phases: [{ count: 2 }, {}], maxConcurrent: 9 }),
    );
    const r = await flotilla([
      'rollout',
      'create',
      '--release',
      '1.1.0',
      '--policy',
      file,
      '--max-concurrent',
      '3',
      '--dry-run',
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.json().request.policy).toEqual({
      target: { hardware: ['rpi4'] },
      phases: [{ count: 2 }, {}],
      maxConcurrent: 3,
    });
    expect(seen).toEqual([]); // dry run sends nothing
  });

  it('rollout create --allow-downgrade --reason puts the reason into the policy', async () => {
    const r = await flotilla([
      'rollout',
      'create',
      '--release',
      '1.0.0',
      '--allow-downgrade',
      '--reason',
      'TEST-ONLY 1.1.0 drops the modem',
      '--dry-run',
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.json().request.policy.allowDowngrade).toEqual({ reason: 'TEST-ONLY 1.1.0 drops the modem' });
  });

  it.each([
    ['--allow-downgrade without a reason', ['--allow-downgrade'], 'FLOTILLA_ERR_CLI_USAGE'],
    ['--reason without --allow-downgrade', ['--reason', 'x'], 'FLOTILLA_ERR_CLI_USAGE'],
    ['a phase size that is not a number', ['--phases', '1,lots,*'], 'FLOTILLA_ERR_CLI_USAGE'],
    ["'*' before the last phase", ['--phases', '*,1'], 'FLOTILLA_ERR_CLI_USAGE'],
    ['a threshold that is not a number', ['--error', 'ten'], 'FLOTILLA_ERR_CLI_USAGE'],
    ['a policy file that does not exist', ['--policy', '/nonexistent/policy.json'], 'FLOTILLA_ERR_CLI_INPUT'],
  ])('rollout create refuses %s before sending anything', async (_name, flags, code) => {
    const r = await flotilla(['rollout', 'create', '--release', '1.1.0', ...flags, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe(code);
    expect(seen).toEqual([]);
  });

  it('a missing required option is a usage error (exit 2)', async () => {
    const r = await flotilla(['rollout', 'create']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--release');
  });

  it.each([
    [['rollout', 'pause', 'r1', '--note', 'lunch'], 'POST', '/api/v1/rollouts/r1/pause', { note: 'lunch' }],
    [['rollout', 'abort', 'r1', '--rollback'], 'POST', '/api/v1/rollouts/r1/abort', { rollback: true }],
    [['rollout', 'approve', 'r1', '--phase', '2'], 'POST', '/api/v1/rollouts/r1/approve', { phase: 1 }],
    [['rollout', 'approve', 'r1'], 'POST', '/api/v1/rollouts/r1/approve', {}],
    [['devices', 'accept', 'dev-1'], 'POST', '/api/v1/devices/dev-1/accept', {}],
  ])('%j sends %s %s', async (args, method, url, body) => {
    const r = await flotilla([...args, '--json']);
    expect(r.code).toBe(0);
    expect(r.json().ok).toBe(true);
    expect(seen[0]).toMatchObject({ method, url });
    expect(JSON.parse(seen[0]!.body.toString())).toEqual(body);
  });

  it('approve --phase 0 is refused (phases are numbered from 1)', async () => {
    const r = await flotilla(['rollout', 'approve', 'r1', '--phase', '0', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_CLI_USAGE');
  });

  it('devices show renders for people', async () => {
    const b = await flotilla(['devices', 'show', 'dev-1']);
    expect(b.stdout).toContain('device dev-1');
    expect(b.stdout).toContain('tags: ["lab"]');
  });

  it('rollout status --watch follows the stream and ends when the rollout completes', async () => {
    const r = await flotilla(['rollout', 'status', 'r1', '--watch', '--interval', '5', '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.rollout.status)).toEqual(['running', 'running', 'completed']);
    expect(lines.map((l) => l.rollout.summary.totals.healthy)).toEqual([3, 6, 9]);
    // Woken by the SSE events, not by the 5 s polling interval.
    expect(seen.some((s) => s.url === '/api/v1/events')).toBe(true);
  });
});

describe('rollout status shows the states a rollout can end or wait in', () => {
  const phase = {
    index: 0,
    name: 'canary',
    total: 3,
    healthy: 0,
    failed: 3,
    inFlight: 0,
    notStarted: 0,
    successThreshold: 100,
    errorThreshold: 100,
    successPercent: 0,
    errorPercent: 100,
    status: 'running',
  };
  const totals = { devices: 3, healthy: 0, failed: 3, inFlight: 0, notStarted: 0 };

  it('says why a rollout failed and that a waiting one waits for a maintenance window', async () => {
    const { renderRollout } = await import('../src/commands/rollout.js');
    const failed = renderRollout({
      id: 'r1',
      release: '1.1.0',
      status: 'failed',
      summary: {
        status: 'failed',
        currentPhase: 0,
        pause: null,
        phases: [phase],
        totals,
        failure: { phase: 0, healthy: 0, total: 3, successThreshold: 100 },
      },
    });
    expect(failed).toContain('failed: every device of canary finished, 0/3 healthy');
    const waiting = renderRollout({
      id: 'r2',
      release: '1.1.0',
      status: 'waiting',
      summary: {
        status: 'waiting',
        currentPhase: 0,
        pause: null,
        phases: [phase],
        totals: { ...totals, aborted: 2 },
      },
    });
    expect(waiting).toContain('waiting for a maintenance window');
    expect(waiting).toContain('2 stopped by the abort');
  });
});
