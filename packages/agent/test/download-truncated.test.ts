import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeBundle } from '@flotilla/image';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { download } from '../src/download/downloader.js';
import { AGENT_LIMITS, type Clock, HttpFetcher, type Logger } from '../src/index.js';
import { ChunkWriter } from '../src/install/chunk-writer.js';
import { MemorySlotDevice } from '../src/testing.js';
import { makeImage, manifestFor, Rig, signedRelease } from './helpers.js';

/** Polls a condition (the machine is busy: a generous budget, never a fixed sleep to assert on). */
async function waitFor(cond: () => boolean, budgetMs: number): Promise<void> {
  const end = Date.now() + budgetMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${budgetMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A clock whose sleeps are recorded and return at once: backoff is asserted, never waited for. */
function recordingClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => new Date(),
    monotonicMs: () => performance.now(),
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      sleeps.push(ms);
    },
  };
}

function recordingLogger(lines: { level: string; obj: object; msg?: string }[]): Logger {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj, ...(msg ? { msg } : {}) });
    };
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => log,
  };
  return log;
}

describe('a truncated object on the server (CDN cut short)', () => {
  let server: http.Server;
  let base: string;
  let requests = 0;
  /** Today's bug looped forever: the test stops it after this many requests instead of hanging. */
  const runaway = new AbortController();

  beforeEach(async () => {
    requests = 0;
    server = http.createServer((req, res) => {
      requests++;
      if (requests > 200) runaway.abort(new Error('runaway: more than 200 requests for one download'));
      // The object itself is short: a correct Content-Length for fewer bytes than were signed.
      const image = truncated;
      const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      const part = image.subarray(start);
      res.writeHead(m ? 206 : 200, {
        'content-length': part.length,
        ...(m ? { 'content-range': `bytes ${start}-${image.length - 1}/${image.length}` } : {}),
      });
      res.end(part);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const image = makeImage(31, 64 * 1024);
  const truncated = image.subarray(0, image.length - 5000);

  it('counts every short body as a failed attempt, backs off with jitter, logs each retry and ends (FLOTILLA_ERR_AGENT_DOWNLOAD_TRUNCATED)', async () => {
    const m = manifestFor(image, { version: '1.0.0' });
    const slot = new MemorySlotDevice('B', image.length);
    const cw = new ChunkWriter(await slot.openWrite(), m.image, 0, {
      everyBytes: 1 << 30,
      save: async () => undefined,
    });
    const clock = recordingClock();
    const lines: { level: string; obj: object; msg?: string }[] = [];
    const limits = { ...AGENT_LIMITS.download, maxRetries: 4, maxAttempts: 10, backoffBaseMs: 100 };
    const done = download({
      fetcher: new HttpFetcher(),
      clock,
      url: `${base}/img`,
      offset: 0,
      size: image.length,
      sink: cw,
      limits,
      signal: runaway.signal,
      log: recordingLogger(lines),
      random: () => 0.5,
    });
    await expect(done).rejects.toMatchObject({ code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_TRUNCATED' });
    // The first attempt made progress; then maxRetries attempts without progress.
    expect(requests).toBe(limits.maxRetries + 1);
    expect(clock.sleeps).toHaveLength(limits.maxRetries);
    // Exponential, never zero (no hot loop): 100·2^k, half fixed, half jitter (0.5 here).
    expect(clock.sleeps).toEqual([75, 150, 300, 600]);
    const retries = lines.filter((l) => l.msg === 'download attempt failed; retrying');
    expect(retries).toHaveLength(limits.maxRetries);
    expect(retries[0]!.obj).toMatchObject({ code: 'FLOTILLA_ERR_AGENT_DOWNLOAD_TRUNCATED', attempt: 1 });
  });
});

/** The compiled CLI, as an installed device runs it. */
const BIN = fileURLToPath(new URL('../dist/bin/flotilla-agent.js', import.meta.url));

describe('SIGTERM while a download retries', () => {
  let rig: Rig;
  let child: ChildProcess | null = null;
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rig?.cleanup();
  });

  it('ends the agent within seconds on SIGTERM while it retries a truncated bundle, leaving a resumable Downloading state', async () => {
    rig = await Rig.create();
    const d = rig.dev.paths;
    const next = makeImage(32, rig.factory.length);
    const imagePath = join(rig.dev.dir, 'image.img');
    await writeFile(imagePath, next);
    const bundle = join(rig.dev.dir, 'update.flot');
    await writeBundle({
      manifest: signedRelease(rig.keys, next, { version: '1.1.0', securityVersion: 2 }),
      imagePath,
      sbom: Buffer.from('sbom'),
      output: bundle,
    });
    // The copy on the USB stick lost its last bytes.
    const { size } = await stat(bundle);
    await truncate(bundle, size - 3000);
    const config = join(rig.dev.dir, 'agent.json');
    await writeFile(
      config,
      JSON.stringify({
        deviceId: 'dev-1',
        hardware: 'sim-board-v1',
        dataDir: d.data,
        trustDir: d.trust,
        factoryReleaseFile: d.factoryRelease,
        slots: { A: { path: d.slotA }, B: { path: d.slotB } },
        bootloader: { kind: 'file', path: join(rig.dev.dir, 'bootloader.json') },
        reboot: { command: ['true'] },
        logLevel: 'info',
        // A long backoff: the agent is asleep between retries when the signal comes.
        limits: { download: { backoffBaseMs: 600_000, backoffMaxMs: 600_000, maxRetries: 50 } },
      }),
    );
    let output = '';
    const proc = spawn(process.execPath, [BIN, 'install', bundle, '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    proc.stdout!.on('data', (b: Buffer) => {
      output += b.toString();
    });
    proc.stderr!.on('data', (b: Buffer) => {
      output += b.toString();
    });
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
      proc.once('exit', (code, signal) => r({ code, signal })),
    );
    await waitFor(() => output.includes('download attempt failed; retrying'), 30_000);
    proc.kill('SIGTERM');
    const ended = await Promise.race([
      exited,
      new Promise<null>((r) => setTimeout(() => r(null), 20_000).unref()),
    ]);
    expect(ended, `still running 20 s after SIGTERM:\n${output.slice(-2000)}`).not.toBeNull();
    expect(ended!.signal).toBeNull(); // it ended by itself, not by the default signal action
    const state = JSON.parse(await readFile(join(d.data, 'state.json'), 'utf8'));
    expect(state.state).toBe('Downloading');
    expect(state.deployment?.version).toBe('1.1.0');
    // The slot that runs is untouched.
    expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
  }, 90_000);
});
