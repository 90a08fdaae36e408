import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nginxMissing } from '../cluster/nginx.mjs';
import { postgresBin } from '../cluster/postgres.mjs';
import { redisMissing } from '../cluster/redis.mjs';

/**
 * `pnpm bench cluster` end to end at a tiny size, so the bench keeps running: two nodes on a real
 * PostgreSQL with Redis and nginx, 40 devices logging in and reporting, the ingest workload on
 * SQLite and PostgreSQL, and engine passes at 500 devices on both. Checks what the figures are
 * made of (every device in, reports acknowledged, every report stored, a pass over every
 * device), never how fast.
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));
const missing = nginxMissing()?.[0] ?? (postgresBin ? null : 'PostgreSQL') ?? redisMissing();
if (missing) console.warn(`cluster bench run skipped: ${missing} is not installed`);

function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bench/cluster/run.mjs', ...args],
      { cwd: repo, timeout: 600_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

describe('pnpm bench cluster', () => {
  it.skipIf(missing)(
    'devices across 2 nodes, ingest on SQLite and PostgreSQL, engine passes: every figure measured',
    async () => {
      const r = await run([
        ...['--devices', '40', '--nodes', '2', '--ramp-seconds', '2', '--report-seconds', '1'],
        ...['--hold-seconds', '3', '--ingest-devices', '100', '--ingest-rounds', '2'],
        ...['--engine-devices', '500', '--engine-passes', '1', '--json'],
      ]);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
      expect(out.devices).toMatchObject({ nodes: 2, devices: 40, connectedAtOnce: 40, loadProcesses: 1 });
      expect(out.devices.reportsAckedPerSecond).toBeGreaterThan(0);
      expect(out.devices.loginP99Seconds).toBeGreaterThanOrEqual(out.devices.loginP50Seconds);
      expect(out.devices.perNode.map((n: { node: string }) => n.node)).toEqual(['node-1', 'node-2']);
      for (const n of out.devices.perNode) expect(n.rssMiB).toBeGreaterThan(0);
      expect(out.ingest).toMatchObject({ devices: 100, rounds: 2, reportsPerRound: 200 });
      expect(out.ingest.sqlite.medianReportsPerSecond).toBeGreaterThan(0);
      expect(out.ingest.postgres.medianReportsPerSecond).toBeGreaterThan(0);
      expect(out.engine.map((e: { store: string }) => e.store)).toEqual(['sqlite', 'postgres']);
      for (const e of out.engine) {
        expect(e).toMatchObject({ devices: 500, deploymentRecords: 500, rolloutStatus: 'running' });
        expect(e.passes).toHaveLength(1);
      }
    },
    600_000,
  );

  it('refuses an out-of-range value before starting anything (exit 2, the usage)', async () => {
    const r = await run(['--engine-devices', '100,abc']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--engine-devices 100,abc');
    expect(r.stderr).toContain('usage: ');
  });
});
