import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningServer, startServer } from '@flotilla/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The server tests' scripted device (real MQTT client) and fixtures, reused rather than copied.
import { connectFleet, firstOffered, SimDevice, testImage, uploadRelease } from '../../server/test/fleet.js';
import { auth, TEST_ADMIN, waitFor } from '../../server/test/helpers.js';
import { type ApiServer, startApiServer } from './api-server.js';
import { startFlotilla } from './run-cli.js';

// The operator CLI against the real server (HTTP API on loopback, no MQTT listener): the
// contract between the two, not the server's semantics (tested in packages/server).

const TOKEN = 'TEST-ONLY-admin-token-0123456789abcdef0123456789abcdef';
let api: ApiServer;
let server: RunningServer;

beforeAll(async () => {
  api = await startApiServer('flotilla-cli-real-', TOKEN);
  server = api.server;
});

afterAll(async () => api?.close());

function flotilla(args: string[], env: Record<string, string> = {}) {
  return startFlotilla(args, { FLOTILLA_SERVER: server.addresses.api, FLOTILLA_TOKEN: TOKEN, ...env }).done;
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

// Releases through the CLI as an operator makes them: `keys init`, `bundle create`, then
// `release create FILE.flot` against a real server that imported those keys (issue 13, item 10:
// the CLI posted to a route the server does not have, and a stub of the server agreed with it).
describe('release create / list / promote against the real server', () => {
  let rel: RunningServer;
  const relDir = mkdtempSync(join(tmpdir(), 'flotilla-cli-release-'));
  const keysDir = join(relDir, 'keys');
  const dataDir = join(relDir, 'data');
  const cli = (args: string[]) =>
    startFlotilla(args, { FLOTILLA_SERVER: rel.addresses.api, FLOTILLA_TOKEN: TOKEN }, 60_000).done;
  const bundleOf = async (version: string, variant: number) => {
    const image = join(relDir, `image-${version}.img`);
    writeFileSync(image, testImage(variant, 256 * 1024));
    const out = join(relDir, `TEST-ONLY-${version}.flot`);
    const made = await cli([
      'bundle',
      'create',
      '--out',
      out,
      '--rootfs',
      image,
      '--format',
      'raw',
      '--size',
      String(256 * 1024),
      '--name',
      'TEST-ONLY-os',
      '--version',
      version,
      '--security-version',
      '1',
      '--compatible',
      'TEST-ONLY-board',
      '--keys',
      keysDir,
      '--chunk-size',
      '64K',
      '--json',
    ]);
    expect(made.code, made.stderr + made.stdout).toBe(0);
    return out;
  };

  beforeAll(async () => {
    const init = await startFlotilla(
      [
        'keys',
        'init',
        '--dir',
        keysDir,
        '--root-keys',
        '1',
        '--root-threshold',
        '1',
        '--label',
        'TEST-ONLY',
        '--json',
      ],
      {},
    ).done;
    expect(init.code, init.stderr).toBe(0);
    rel = await startServer({
      dataDir,
      importKeysFrom: keysDir,
      adminToken: TOKEN,
      port: 0,
      mqttPort: null,
      logLevel: 'silent',
    });
  }, 60_000);

  afterAll(async () => {
    await rel?.close();
    rmSync(relDir, { recursive: true, force: true });
  });

  it('release create FILE.flot uploads a signed bundle, and it is listed in dev', async () => {
    const file = await bundleOf('1.2.0', 1);
    const r = await cli(['release', 'create', file, '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.json()).toMatchObject({
      ok: true,
      release: { version: '1.2.0', name: 'TEST-ONLY-os', channels: ['dev'] },
    });
    const list = await cli(['release', 'list', '--json']);
    expect(list.json().releases.map((x: { version: string }) => x.version)).toEqual(['1.2.0']);
    const human = await cli(['release', 'list']);
    expect(human.stdout).toMatch(/1\.2\.0\s+release/);
  });

  it('release create --channel staging promotes the new release one channel at a time', async () => {
    const file = await bundleOf('1.3.0', 2);
    const r = await cli(['release', 'create', file, '--channel', 'staging', '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.json().release.channels).toEqual(['dev', 'staging']);
    const p = await cli(['release', 'promote', '1.3.0', '--channel', 'prod', '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect([...p.json().release.channels].sort()).toEqual(['dev', 'prod', 'staging']);
  });

  it('a file that is not a bundle is refused by the server at its first bytes, with the code', async () => {
    const file = join(relDir, 'zeros.flot');
    writeFileSync(file, Buffer.alloc(32 * 1024 * 1024));
    const r = await cli(['release', 'create', file, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_SERVER_UPLOAD_INVALID');
    expect(readdirSync(join(dataDir, 'artifacts', 'tmp'))).toEqual([]);
  });

  it('a version outside the grammar is refused by the CLI before any request', async () => {
    const r = await cli(['release', 'promote', '../1.2.0', '--to', 'staging', '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_RELEASE_VERSION');
  });

  it('release create of a missing file fails before any request', async () => {
    const r = await cli(['release', 'create', join(relDir, 'nope.flot'), '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe('FLOTILLA_ERR_CLI_BUNDLE');
  });
});

/**
 * A server with its MQTT listener, a fast rollout loop and releases 1.0.0 and 1.1.0, and two
 * scripted devices on 1.0.0 (not connected yet).
 */
async function startLiveServer(dataDir: string, prefix: string) {
  const live = await startServer({
    dataDir,
    devKeys: true,
    adminToken: TEST_ADMIN,
    port: 0,
    mqttPort: 0,
    logLevel: 'silent',
    limits: { rolloutTickMs: 100 },
  });
  const v1 = await uploadRelease(live, '1.0.0', testImage(0));
  await uploadRelease(live, '1.1.0', testImage(1));
  return { live, fleet: SimDevice.fleet(prefix, 2, '1.0.0', v1.image.sha256) };
}

async function stopLiveServer(live: RunningServer | undefined, fleet: SimDevice[], dataDir: string) {
  await Promise.all(fleet.map((d) => d.client?.endAsync(true).catch(() => {})));
  await live?.close();
  rmSync(dataDir, { recursive: true, force: true });
}

// `rollout status --watch` against a live rollout: the real server with its MQTT listener, two
// scripted devices on real MQTT connections (the server tests' SimDevice), the compiled CLI in a
// child process following the rollout while the devices install.
describe('rollout status --watch against a live rollout', () => {
  let live: RunningServer;
  let fleet: SimDevice[] = [];
  const liveDir = mkdtempSync(join(tmpdir(), 'flotilla-cli-watch-'));

  beforeAll(async () => {
    ({ live, fleet } = await startLiveServer(liveDir, 'TEST-ONLY-cli-watch'));
    await connectFleet(live, fleet);
  });

  afterAll(() => stopLiveServer(live, fleet, liveDir));

  it('prints the rollout as it progresses and exits 0 when it completes (--json, one line per change)', async () => {
    const created = await live.app.inject({
      method: 'POST',
      url: '/api/v1/rollouts',
      headers: auth(),
      payload: {
        name: 'TEST-ONLY watch',
        release: '1.1.0',
        policy: { target: {}, phases: [{ count: 1 }, { percent: 100 }] },
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;

    const watch = startFlotilla(
      ['rollout', 'status', id, '--watch', '--json', '--interval', '0.5'],
      { FLOTILLA_SERVER: live.addresses.api, FLOTILLA_TOKEN: TEST_ADMIN },
      45_000,
    );
    const { output } = watch;
    // biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON lines
    const lines = (): any[] =>
      output.stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l));
    const healthySeen = (n: number) => lines().some((l) => l.rollout.summary.totals.healthy === n);

    try {
      // The watch is following before anything installs; the canary installs and the watch shows
      // 1 healthy before the second device even starts.
      const canary = await firstOffered(fleet);
      await waitFor(() => lines().length >= 1, 15_000, `the watch's first line (stderr: ${output.stderr})`);
      await canary.d.install(canary.cmd.offer.signed.deploymentId, 'healthy', '1.1.0', 'b'.repeat(64));
      await waitFor(() => healthySeen(1), 15_000, `the watch to show 1 healthy (stderr: ${output.stderr})`);
      const other = fleet.find((d) => d !== canary.d)!;
      const offer = await other.nextOffer(15_000);
      await other.install(offer.offer.signed.deploymentId, 'healthy', '1.1.0', 'b'.repeat(64));
      expect((await watch.done).code, output.stderr).toBe(0);
    } finally {
      watch.child.kill('SIGKILL');
    }

    const out = lines();
    expect(out.every((l) => l.ok === true && l.rollout.id === id)).toBe(true);
    const healthy = out.map((l) => l.rollout.summary.totals.healthy as number);
    expect(healthy[0]).toBe(0);
    expect(healthy.at(-1)).toBe(2);
    expect(healthy).toContain(1);
    // Progress never goes backwards, and the last line is the completed rollout.
    expect(healthy.every((h, i) => i === 0 || h >= healthy[i - 1]!)).toBe(true);
    expect(out.at(-1).rollout.status).toBe('completed');
    expect(out.at(-1).rollout.summary.totals.devices).toBe(2);
  }, 60_000);
});

// A rollout driven only by the compiled CLI, as an operator drives one (issue 13: these commands
// were answered by a stub): `devices accept` of devices that registered themselves, `devices
// show`, then `rollout create` → pause → resume → approve the waiting phase → abort, followed by
// `rollout status --watch` until the abort ends it. The devices are the server tests' scripted
// ones on real MQTT; everything the test reads or changes goes through the API or the CLI.
describe('an operator drives a rollout through the CLI against the real server', () => {
  let live: RunningServer;
  let fleet: SimDevice[] = [];
  const opsDir = mkdtempSync(join(tmpdir(), 'flotilla-cli-ops-'));
  const cli = (args: string[]) =>
    startFlotilla(args, { FLOTILLA_SERVER: live.addresses.api, FLOTILLA_TOKEN: TEST_ADMIN }, 60_000).done;
  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${live.addresses.api}/api/v1/${path}`, {
      ...init,
      headers: { ...auth(), ...(init.body ? { 'content-type': 'application/json' } : {}) },
    });
    // biome-ignore lint/suspicious/noExplicitAny: API JSON
    return { status: res.status, body: (await res.json()) as any };
  };
  /** Runs a CLI command that must succeed and returns its JSON. */
  const ok = async (args: string[]) => {
    const r = await cli([...args, '--json']);
    expect(r.code, `flotilla ${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
    return r.json();
  };

  beforeAll(async () => {
    // The devices are not enrolled here: they register themselves and the CLI accepts them.
    ({ live, fleet } = await startLiveServer(opsDir, 'TEST-ONLY-cli-ops'));
  }, 60_000);

  afterAll(() => stopLiveServer(live, fleet, opsDir));

  it('devices accept and show, then rollout create → pause → resume → approve → abort, watched to the end', async () => {
    // Devices register themselves (pending) and are accepted by the operator with the CLI.
    for (const d of fleet) {
      const reg = await api('devices/register', {
        method: 'POST',
        body: JSON.stringify({
          deviceId: d.id,
          publicKey: d.key.publicKeyHex,
          proof: d.key.password(),
          hardware: 'TEST-ONLY-board',
        }),
      });
      expect(reg.status, JSON.stringify(reg.body)).toBe(200);
      expect((await ok(['devices', 'show', d.id])).device.status).toBe('pending');
      expect((await ok(['devices', 'accept', d.id])).device).toMatchObject({ id: d.id, status: 'accepted' });
      await d.connect(live.addresses.mqtt!);
    }
    for (const d of fleet)
      await waitFor(
        async () => (await api(`devices/${d.id}`)).body.version === '1.0.0',
        15_000,
        `${d.id} reporting 1.0.0`,
      );
    const shown = await ok(['devices', 'show', fleet[0]!.id]);
    expect(shown.device).toMatchObject({ status: 'accepted', version: '1.0.0', online: true });
    const human = await cli(['devices', 'show', fleet[0]!.id]);
    expect(human.stdout).toContain(fleet[0]!.id);

    // One canary, then the rest after an approval.
    const created = await ok(['rollout', 'create', '--release', '1.1.0', '--phases', '1,*', '--approval']);
    const id = created.rollout.id as string;
    // created `scheduled`; the rollout loop starts it on its next tick
    expect(['scheduled', 'running']).toContain(created.rollout.status);
    await waitFor(
      async () => (await api(`rollouts/${id}`)).body.status === 'running',
      30_000,
      'the rollout to run',
    );
    const watch = startFlotilla(
      ['rollout', 'status', id, '--watch', '--json', '--interval', '0.5'],
      { FLOTILLA_SERVER: live.addresses.api, FLOTILLA_TOKEN: TEST_ADMIN },
      90_000,
    );
    try {
      expect((await ok(['rollout', 'pause', id, '--note', 'TEST-ONLY lunch'])).rollout.status).toBe('paused');
      const paused = await cli(['rollout', 'pause', id, '--json']);
      expect(paused.code).toBe(1);
      expect(paused.json().error).toMatchObject({
        code: 'FLOTILLA_ERR_ROLLOUT_STATE',
        message: expect.stringContaining('a paused rollout'),
      });
      expect((await ok(['rollout', 'resume', id])).rollout.status).toBe('running');

      const canary = await firstOffered(fleet, 30_000);
      await canary.d.install(canary.cmd.offer.signed.deploymentId, 'healthy', '1.1.0', 'b'.repeat(64));
      await waitFor(
        async () => (await api(`rollouts/${id}`)).body.status === 'waiting-approval',
        30_000,
        'the second phase waiting for approval',
      );
      const other = fleet.find((d) => d !== canary.d)!;
      expect(other.commands.some((c) => c.type === 'offer')).toBe(false);
      expect((await ok(['rollout', 'approve', id, '--phase', '2'])).rollout.status).not.toBe(
        'waiting-approval',
      );
      // The approval lets the second phase offer the update; abort while that device is in flight.
      await other.nextOffer(30_000);
      expect((await ok(['rollout', 'abort', id])).rollout.status).toBe('aborted');
      const again = await cli(['rollout', 'abort', id, '--json']);
      expect(again.json().error.message).toContain('an aborted rollout');

      const watched = await watch.done;
      expect(watched.code, watched.stderr).toBe(0);
      // biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON lines
      const lines: any[] = watched.stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l));
      expect(lines.every((l) => l.ok === true && l.rollout.id === id)).toBe(true);
      expect(lines.some((l) => l.rollout.summary.totals.healthy === 1)).toBe(true);
      expect(lines.at(-1).rollout.status).toBe('aborted');
    } finally {
      watch.child.kill('SIGKILL');
    }
    const listed = await ok(['rollout', 'list']);
    expect(listed.rollouts.find((r: { id: string }) => r.id === id).status).toBe('aborted');
  }, 180_000);
});
