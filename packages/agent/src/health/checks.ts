import http from 'node:http';
import https from 'node:https';
import { execBounded } from '../exec.js';

export type HealthResult = { ok: true } | { ok: false; reason: string };

export interface HealthContext {
  signal: AbortSignal;
  timeoutMs: number;
  /** Resolves true once the agent is connected to the server (within `ms`). */
  waitOnline(ms: number): Promise<boolean>;
}

/** One health check after the reboot into a new slot; the agent commits only if all pass. */
export interface HealthCheck {
  readonly name: string;
  run(ctx: HealthContext): Promise<HealthResult>;
}

export class CommandCheck implements HealthCheck {
  readonly name: string;
  constructor(private readonly argv: string[]) {
    this.name = `command ${argv.join(' ')}`.slice(0, 120);
  }
  async run(ctx: HealthContext): Promise<HealthResult> {
    const r = await execBounded(this.argv, {
      timeoutMs: ctx.timeoutMs,
      maxOutputBytes: 2048,
      signal: ctx.signal,
    }).catch((err: Error) => ({ code: 127, output: err.message, timedOut: false }));
    if (r.code === 0) return { ok: true };
    const why = r.timedOut ? 'timed out' : `exit code ${r.code}`;
    return {
      ok: false,
      reason: `${this.name}: ${why}${r.output.trim() ? ` (${r.output.trim().slice(-300)})` : ''}`,
    };
  }
}

export class SystemdUnitCheck implements HealthCheck {
  readonly name: string;
  constructor(
    private readonly unit: string,
    private readonly systemctl = 'systemctl',
  ) {
    this.name = `systemd ${unit}`;
  }
  async run(ctx: HealthContext): Promise<HealthResult> {
    const r = await execBounded([this.systemctl, 'is-active', this.unit], {
      timeoutMs: ctx.timeoutMs,
      maxOutputBytes: 1024,
    });
    return r.code === 0
      ? { ok: true }
      : { ok: false, reason: `${this.unit} is ${r.output.trim() || 'not active'}` };
  }
}

export class HttpProbeCheck implements HealthCheck {
  readonly name: string;
  constructor(
    private readonly url: string,
    private readonly expectStatus = 200,
  ) {
    this.name = `http ${url}`;
  }
  run(ctx: HealthContext): Promise<HealthResult> {
    const u = new URL(this.url);
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      const req = mod.get(u, { signal: ctx.signal, timeout: ctx.timeoutMs }, (res) => {
        res.resume();
        resolve(
          res.statusCode === this.expectStatus
            ? { ok: true }
            : { ok: false, reason: `${this.url} answered ${res.statusCode}` },
        );
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err) => resolve({ ok: false, reason: `${this.url}: ${err.message}` }));
    });
  }
}

/** The agent must reach the server again from the new slot (Mender rolls back otherwise). */
export class ServerReachableCheck implements HealthCheck {
  readonly name = 'server connection';
  async run(ctx: HealthContext): Promise<HealthResult> {
    return (await ctx.waitOnline(ctx.timeoutMs))
      ? { ok: true }
      : { ok: false, reason: 'could not reach the server' };
  }
}

export class FunctionCheck implements HealthCheck {
  constructor(
    readonly name: string,
    private readonly fn: () => Promise<HealthResult>,
  ) {}
  run(): Promise<HealthResult> {
    return this.fn();
  }
}
