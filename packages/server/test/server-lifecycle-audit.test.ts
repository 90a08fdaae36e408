import { afterEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { auth, cleanupDirs, startTestServer, tempDir } from './helpers.js';

// Issue 13, item 15: who started the server when, and whether the run before ended cleanly, was
// nowhere to be found: a crash and restart left no trace in the audit log.

let server: RunningServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
  cleanupDirs();
});

async function lifecycle(s: RunningServer): Promise<{ action: string; detail: Record<string, unknown> }[]> {
  const res = await s.app.inject({ method: 'GET', url: '/api/v1/audit?limit=1000', headers: auth() });
  expect(res.statusCode, res.body).toBe(200);
  const items = res.json().items as { action: string; detail: Record<string, unknown> }[];
  return items
    .filter((e) => e.action.startsWith('server.'))
    .map((e) => ({ action: e.action, detail: e.detail }))
    .reverse();
}

describe('server start and restart are audited', () => {
  it('records the first start, a clean stop, and a restart after it', async () => {
    const dataDir = tempDir();
    server = await startTestServer({ dataDir });
    await server.close();
    server = await startTestServer({ dataDir });
    expect(await lifecycle(server)).toEqual([
      { action: 'server.start', detail: expect.objectContaining({ pid: process.pid, broker: 'embedded' }) },
      { action: 'server.stop', detail: { pid: process.pid } },
      { action: 'server.restart', detail: expect.objectContaining({ previousRun: 'stopped' }) },
    ]);
  });

  it('a restart after a crash says the previous run ended unclean', async () => {
    const dataDir = tempDir();
    server = await startTestServer({ dataDir });
    await server.crash();
    server = await startTestServer({ dataDir });
    expect((await lifecycle(server)).map((e) => [e.action, e.detail.previousRun])).toEqual([
      ['server.start', undefined],
      ['server.restart', 'ended-unclean'],
    ]);
  });
});
