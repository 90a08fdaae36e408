// Debian's redis-server as a local process for `cluster-test`: a free loopback port, no
// persistence, its files in a temp dir, its process group killed at exit.
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, spawnGroup, tempDir, waitFor } from './processes.mjs';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** Why Redis cannot run here (null: it can). */
export function redisMissing() {
  return existsSync(REDIS_SERVER) ? null : 'redis-server is not installed (apt-get install redis-server)';
}

/** @returns {Promise<{ url: string, child: import('./processes.mjs').Child }>} */
export async function startRedis() {
  const missing = redisMissing();
  if (missing) throw new Error(missing);
  const dir = tempDir('flotilla-redis-');
  const port = await freePort();
  const child = spawnGroup(
    'redis',
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { logFile: join(dir, 'redis.log') },
  );
  await waitFor('redis-server answering PING', () => pings(port), {
    budgetMs: 30_000,
    abort: () => (child.running() ? null : `it exited: ${child.logTail()}`),
  });
  return { url: `redis://127.0.0.1:${port}`, child };
}

/** True once Redis answers PING on the port. @param {number} port @returns {Promise<boolean>} */
export function pings(port) {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    let answer = '';
    s.setTimeout(2000, () => s.destroy());
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      answer += d.toString();
      if (answer.includes('\r\n')) {
        s.destroy();
        resolve(answer.startsWith('+PONG'));
      }
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}
