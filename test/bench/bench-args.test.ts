import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Every bench parses its command line strictly (bench/args.mjs): a mistyped flag stops it with the
 * usage and exit 2 before any work, instead of running the defaults. Only these fast paths run
 * here; the benches themselves are long (`pnpm bench`).
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));

function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: repo, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const BENCHES: Array<{ script: string; documented: string[]; mistyped: string }> = [
  {
    script: 'bench/cluster/run.mjs',
    documented: [
      '--parts',
      'devices,ingest,engine',
      '--devices',
      '20000',
      '--nodes',
      '3',
      '--ramp-seconds',
      '60',
      '--report-seconds',
      '30',
      '--hold-seconds',
      '60',
      '--ingest-devices',
      '10000',
      '--ingest-rounds',
      '5',
      '--engine-devices',
      '100000,1000000',
      '--engine-passes',
      '3',
      '--json',
    ],
    mistyped: '--engine-device',
  },
  { script: 'bench/broker/redis-bus.mjs', documented: ['--messages', '5000'], mistyped: '--mesages' },
  {
    script: 'bench/fleet/run.mjs',
    documented: [
      '--devices',
      '19000',
      '--processes',
      '4',
      '--storm',
      '--no-rollout',
      '--max-concurrent',
      '2000',
    ],
    mistyped: '--device',
  },
  {
    script: 'bench/fleet/storm.mjs',
    documented: [
      '--devices',
      '19000',
      '--processes',
      '2',
      '--brokers',
      'flotilla,mosquitto',
      '--rounds',
      'first,restart',
      '--spread-ms',
      '1000',
      '--pin',
    ],
    mistyped: '--broker',
  },
  {
    script: 'bench/delta/run.mjs',
    documented: ['--only=ext4-debian,text', '--tools=ours,bsdiff,xdelta3,zstd', '--big'],
    mistyped: '--tool=ours',
  },
  { script: 'bench/agent/memory.mjs', documented: ['64', '256', '--with-1g'], mistyped: '--with1g' },
  { script: 'packages/image/bench/delta-by-format.mjs', documented: ['--json'], mistyped: '--jsn' },
];

describe('bench command lines', () => {
  for (const b of BENCHES) {
    it(`${b.script} takes its documented flags (with --help: usage, exit 0) and stops on ${b.mistyped} (exit 2)`, async () => {
      const help = await run([b.script, ...b.documented, '--help']);
      expect(help).toMatchObject({ status: 0, stdout: expect.stringContaining('usage: ') });
      const bad = await run([b.script, b.mistyped]);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain(`Unknown option '${b.mistyped.split('=')[0]}'`);
      expect(bad.stderr).toContain('usage: ');
    });
  }

  it('bench/run.mjs lists the benches, refuses an unknown one, and passes flags (values too) to the bench', async () => {
    const list = await run(['bench/run.mjs', '--help']);
    expect(list).toMatchObject({ status: 0, stdout: expect.stringContaining('storm') });
    const unknown = await run(['bench/run.mjs', 'nosuch']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('unknown benchmark nosuch');
    const passed = await run(['bench/run.mjs', 'fleet', '--devices', '10', '--help']);
    expect(passed).toMatchObject({
      status: 0,
      stdout: expect.stringContaining('usage: node bench/fleet/run.mjs'),
    });
    const mistyped = await run(['bench/run.mjs', 'fleet', '--devcies', '10']);
    expect(mistyped.status).toBe(1);
    expect(mistyped.stderr).toContain("Unknown option '--devcies'");
  });
});
