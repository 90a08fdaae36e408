import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { compareHistories, readAcknowledged } from './devices.mjs';
import { nginxMissing } from './nginx.mjs';
import { missingServerFlags } from './nodes.mjs';

/**
 * `cluster-test` (test/cluster/run.mjs, the compiled CLI and simulator) in its one-node SQLite
 * mode: nginx (API, artifacts, MQTT stream) in front of one `flotilla server` process, 10 real
 * agents, a staged rollout to completion, every device's acknowledged reports found in the store
 * once. About 20 s here; the 3-node PostgreSQL run is `pnpm cluster-test` itself.
 */
const RUN = fileURLToPath(new URL('./run.mjs', import.meta.url));

function runClusterTest(args: string[]) {
  return promisify(execFile)(process.execPath, [RUN, ...args], { timeout: 600_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

const missing = nginxMissing();
if (missing)
  console.warn(`cluster-test run skipped: ${missing[0]} is not installed (apt-get install ${missing[1]})`);

describe('cluster-test', () => {
  it.skipIf(missing)(
    'one node on SQLite behind nginx: the rollout completes and no acknowledged report is lost or duplicated',
    async () => {
      const r = await runClusterTest(['--store', 'sqlite', '--nodes', '1', '--devices', '10', '--json']);
      const last = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
      expect(r.code, r.stderr).toBe(0);
      expect(Object.keys(last)).toEqual([
        'store',
        'nodes',
        'devices',
        'killed',
        'rollout',
        'reportsLost',
        'reportsDuplicated',
        'engineFailoverSeconds',
      ]);
      expect(last).toEqual({
        store: 'sqlite',
        nodes: 1,
        devices: 10,
        killed: [],
        rollout: { status: 'completed', healthy: 10, failed: 0 },
        reportsLost: 0,
        reportsDuplicated: 0,
        engineFailoverSeconds: null,
      });
      // The comparison had something to compare: the devices' own acknowledged reports.
      expect(r.stderr).toMatch(/[1-9]\d* reports acknowledged to the devices: 0 lost, 0 duplicated/);
    },
    600_000,
  );

  it('names the server options this build lacks for the default 3-node PostgreSQL run, and starts nothing', async () => {
    const lacking = missingServerFlags({ store: 'postgres', nodes: 3 });
    if (lacking.length === 0) return; // the server has them: `pnpm cluster-test` runs for real
    const r = await runClusterTest(['--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error FLOTILLA_ERR_CLUSTER_TEST_SERVER: flotilla server has no ${lacking.join(', ')}`,
    );
    expect(JSON.parse(r.stdout.trim())).toMatchObject({
      error: { code: 'FLOTILLA_ERR_CLUSTER_TEST_SERVER' },
    });
  }, 120_000);

  it('refuses bad flags with FLOTILLA_ERR_CLUSTER_TEST_USAGE and exit 2', async () => {
    for (const args of [
      ['--store', 'sqlite', '--nodes', '3'],
      ['--devices', '2'],
      ['--store', 'mysql'],
      ['--nodes', '0'],
    ]) {
      const r = await runClusterTest(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^error FLOTILLA_ERR_CLUSTER_TEST_USAGE: /);
    }
  }, 120_000);
});

describe('cluster-test history comparison', () => {
  /** A stand-in for GET /api/v1/devices/:id/history: newest first, `limit` and exclusive `until`. */
  function historyApi(stored: Record<string, { ref: string; ts: string; source?: string }[]>) {
    return async (path: string) => {
      const url = new URL(path, 'http://x');
      const id = decodeURIComponent(url.pathname.split('/')[2] ?? '');
      const limit = Number(url.searchParams.get('limit'));
      const until = url.searchParams.get('until');
      const items = (stored[id] ?? [])
        .map((e) => ({ source: 'event', ...e }))
        .filter((e) => !until || Date.parse(e.ts) < Date.parse(until))
        .sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts))
        .slice(0, limit);
      return { deviceId: id, items };
    };
  }

  it('counts a report the device saw acknowledged but the store lacks as lost, and one listed twice as duplicated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-history-'));
    try {
      const file = join(dir, 'acknowledged.jsonl');
      const lines = [
        { deviceId: 'd-1', eventId: 'a', kind: 'boot' },
        { deviceId: 'd-1', eventId: 'b', kind: 'healthy' },
        // A resend of the same event: one acknowledged report.
        { deviceId: 'd-1', eventId: 'b', kind: 'healthy' },
        { deviceId: 'd-2', eventId: 'c', kind: 'boot' },
      ];
      writeFileSync(file, lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      const get = historyApi({
        'd-1': [
          { ref: 'a', ts: '2026-01-01T00:00:01.000Z' },
          { ref: 'a', ts: '2026-01-01T00:00:02.000Z' },
          { ref: 'd-1-deployment', ts: '2026-01-01T00:00:03.000Z', source: 'deployment' },
        ],
        'd-2': [{ ref: 'c', ts: '2026-01-01T00:00:01.000Z' }],
      });
      const r = await compareHistories({
        get,
        acknowledged: readAcknowledged(file),
        deviceIds: ['d-1', 'd-2'],
        settleMs: 0,
      });
      expect(r).toEqual({
        acknowledged: 3,
        lost: 1,
        duplicated: 1,
        examples: ['d-1 lost b', 'd-1 has a 2 times'],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('pages through a long history without skipping or repeating entries that share a time', async () => {
    // 2500 events, five per millisecond: page boundaries fall inside runs of equal times.
    const events = Array.from({ length: 2500 }, (_, i) => ({
      ref: `e${i}`,
      ts: new Date(Date.UTC(2026, 0, 1) + Math.floor(i / 5)).toISOString(),
    }));
    const file = join(mkdtempSync(join(tmpdir(), 'flotilla-history-')), 'acknowledged.jsonl');
    writeFileSync(
      file,
      events.map((e) => `${JSON.stringify({ deviceId: 'd', eventId: e.ref, kind: 'x' })}\n`).join(''),
    );
    try {
      const r = await compareHistories({
        get: historyApi({ d: events }),
        acknowledged: readAcknowledged(file),
        deviceIds: ['d'],
        settleMs: 0,
      });
      expect(r).toMatchObject({ acknowledged: 2500, lost: 0, duplicated: 0 });
    } finally {
      rmSync(join(file, '..'), { recursive: true, force: true });
    }
  });
});
