import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './nginx.js';
import { pings, REDIS_SERVER, redisMissing } from './redis.mjs';

export { redisMissing };

export interface LocalRedis {
  url: string;
  port: number;
  /** Stops the process (SIGTERM; nothing is saved: `--save ''`). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Debian's redis-server as a local process on a free loopback port (redis has no `--port 0`),
 * no persistence, its files in a temp dir.
 */
export async function startRedis(): Promise<LocalRedis> {
  const missing = redisMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-redis-'));
  const port = await freePort();
  let proc: ChildProcess | null = null;
  const stop = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    await exited;
  };
  const start = async () => {
    const output: string[] = [];
    const p = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = p;
    p.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    p.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    // Up when it answers PING; bounded in count and time.
    for (let i = 0; !(await pings(port)); i++) {
      if (p.exitCode !== null || i >= 200) {
        await stop();
        throw new Error(`redis-server did not start on port ${port}: ${output.join('').slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Redis' count of calls of one command (INFO commandstats), e.g. how many PUBLISH it served. */
export function commandCalls(port: number, command: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' });
    let answer = '';
    s.setTimeout(5000, () => s.destroy(new Error('INFO timed out')));
    s.once('connect', () => s.write('INFO commandstats\r\n'));
    s.on('data', (d) => {
      answer += d.toString();
      const m = /^\$(\d+)\r\n/.exec(answer);
      if (m && Buffer.byteLength(answer) >= m[0].length + Number(m[1])) {
        s.destroy();
        resolve(Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(answer)?.[1] ?? 0));
      }
    });
    s.once('error', reject);
  });
}
