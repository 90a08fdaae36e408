import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { testImage } from './fleet.js';
import { TEST_ADMIN, type TestDevice } from './helpers.js';

// A server in its own process, so a test can SIGKILL it at any instant and start it again on the
// same data directory and ports. It runs the compiled dist/ code and is driven over its real API.

const CHILD = fileURLToPath(new URL('./fixtures/server-child.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const running = new Set<ChildProcess>();

/** SIGKILLs every child server still running (call it from afterEach). */
export function killChildServers(): void {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  running.clear();
}

/**
 * A free loopback port below Linux's ephemeral range (32768-60999): the server is restarted on
 * the same port after a SIGKILL, and a port from the ephemeral range may meanwhile have become
 * the local port of some other test's client socket (EADDRINUSE on restart).
 */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free loopback port in 20000-31999');
}

export class ChildServer {
  readonly api: string;
  readonly mqttUrl: string;
  private child: ChildProcess | null = null;

  private constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly mqttPort: number,
  ) {
    this.api = `http://127.0.0.1:${port}`;
    this.mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  }

  /** Starts a server on free loopback ports; resolves once it says it is ready. */
  static async start(dataDir: string): Promise<ChildServer> {
    if (!existsSync(DIST)) throw new Error('run `npx tsc -b` first: the killed server runs compiled code');
    const s = new ChildServer(dataDir, await freePort(), await freePort());
    await s.restart();
    return s;
  }

  /** Starts the server again on the same data directory and ports. */
  async restart(): Promise<void> {
    const child = spawn(process.execPath, [CHILD, this.dataDir, String(this.port), String(this.mqttPort)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    running.add(child);
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server child did not start')), 20_000);
      child.stdout!.on('data', (b: Buffer) => {
        if (b.toString().includes('"ready":true')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
    });
  }

  /** SIGKILLs the server: no shutdown code runs, whatever was in flight is cut. */
  kill(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => {
        running.delete(child);
        resolve();
      });
      child.kill('SIGKILL');
    });
  }

  /** A request with the admin token. */
  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.api}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${TEST_ADMIN}`, ...(init.headers as Record<string, string>) },
    });
  }

  /** Builds releases 1.0.0 and 1.1.0 (raw 256 KiB images) for TEST-ONLY-board; returns their image hashes. */
  async buildTestReleases(): Promise<Record<'1.0.0' | '1.1.0', string>> {
    const shas: Record<string, string> = {};
    for (const [v, img] of [
      ['1.0.0', testImage(0, 256 * 1024)],
      ['1.1.0', testImage(1, 256 * 1024)],
    ] as const) {
      const r = await this.fetch(
        `/api/v1/releases/build?name=TEST-ONLY-os&version=${v}&securityVersion=1&compatible=TEST-ONLY-board&format=raw&partitionSize=${img.length}&input=image`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: img },
      );
      expect(r.status, await r.clone().text()).toBe(201);
      shas[v] = ((await r.json()) as { image: { sha256: string } }).image.sha256;
    }
    return shas as Record<'1.0.0' | '1.1.0', string>;
  }

  /** Registers the device as TEST-ONLY-board hardware with its signed proof and accepts it. */
  async enroll(d: TestDevice): Promise<void> {
    const reg = await fetch(`${this.api}/api/v1/devices/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        deviceId: d.id,
        publicKey: d.publicKeyHex,
        proof: d.password(),
        hardware: 'TEST-ONLY-board',
      }),
    });
    expect(reg.status, await reg.clone().text()).toBe(200);
    const acc = await this.fetch(`/api/v1/devices/${d.id}/accept`, { method: 'POST' });
    expect(acc.status, await acc.text()).toBe(200);
  }

  /** Creates a rollout of the release with the policy; returns its id. */
  async createRollout(release: string, policy: Record<string, unknown>): Promise<string> {
    const r = await this.fetch('/api/v1/rollouts', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ release, policy }),
    });
    expect(r.status, await r.clone().text()).toBe(201);
    return ((await r.json()) as { id: string }).id;
  }
}
