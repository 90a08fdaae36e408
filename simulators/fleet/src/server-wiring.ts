import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { type ListenOptions, type RunningServer, startServer } from '@flotilla/server';
import { SimError } from './errors.js';
import { runPool } from './pool.js';
import type { DeploymentView, RolloutView, ServerHandle } from './ports.js';

/**
 * The one file that knows the server: `startSimServer` runs a real embedded server in this
 * process; `httpServerHandle` drives any server — in-process, a child process or elsewhere —
 * through its public HTTP API with an operator token, exactly as an operator's tools would.
 */
export interface SimServerOptions {
  dataDir: string;
  /** A `flotilla keys init`-style directory (root.json + *.key) imported on first start. */
  keysDir: string;
  port?: number;
  mqttPort?: number;
  adminToken?: string;
  logLevel?: string;
  /** Rollout engine timer; the engine also runs on every device event. */
  rolloutTickMs?: number;
  /** How long an offer waits for its delta to be built before it goes out with the full image only. */
  deltaWaitMs?: number;
  /** More server options (e.g. artifacts behind nginx); its `limits` add to the ones above. */
  serverOptions?: Partial<ListenOptions>;
  /** Where devices download artifacts when not from the API address (e.g. nginx). */
  artifactOrigin?: string;
  /** How often the server samples devices per version (versions over time). */
  versionSampleIntervalMs?: number;
}

export interface SimServer extends ServerHandle {
  running: RunningServer;
  /** Stops the server as a crash would: no flush, no goodbye to devices. */
  crash(): Promise<void>;
  /** Starts it again on the same data directory and ports (devices reconnect by themselves). */
  restart(): Promise<void>;
}

export async function startSimServer(o: SimServerOptions): Promise<SimServer> {
  const token = o.adminToken ?? newToken();
  const boot = (port: number, mqttPort: number) =>
    startServer({
      dataDir: o.dataDir,
      importKeysFrom: o.keysDir,
      autoAccept: true,
      adminToken: token,
      port,
      mqttPort,
      logLevel: o.logLevel ?? 'warn',
      ...o.serverOptions,
      limits: {
        rolloutTickMs: o.rolloutTickMs ?? 1000,
        deltaWaitMs: o.deltaWaitMs ?? 60_000,
        ...(o.versionSampleIntervalMs ? { versionSampleIntervalMs: o.versionSampleIntervalMs } : {}),
        ...o.serverOptions?.limits,
      },
    });
  // The server restarts on the same ports (crash tests): take them below the ephemeral range, where
  // no client socket of this machine can grab them while the server is down.
  let running = await boot(o.port ?? (await stablePort()), o.mqttPort ?? (await stablePort()));
  let down = false;
  const mqtt = new URL(running.addresses.mqtt ?? '');
  const api = new URL(running.addresses.api);
  const handle = httpServerHandle({
    apiUrl: running.addresses.api,
    dashboardUrl: running.addresses.dashboard,
    mqtt: { host: mqtt.hostname, port: Number(mqtt.port) },
    token,
    ...(o.artifactOrigin ? { artifactOrigin: o.artifactOrigin } : {}),
    close: async () => {
      if (!down) await running.close();
      down = true;
    },
  });
  return {
    ...handle,
    get running() {
      return running;
    },
    async crash() {
      down = true;
      await running.crash();
    },
    async restart() {
      running = await boot(Number(api.port), Number(mqtt.port));
      down = false;
    },
  };
}

export function newToken(): string {
  return `flt_sim_${randomBytes(24).toString('base64url')}`;
}

export function httpServerHandle(o: {
  apiUrl: string;
  dashboardUrl: string;
  mqtt: { host: string; port: number };
  token: string;
  /** Default: the API address. */
  artifactOrigin?: string;
  close: () => Promise<void>;
}): ServerHandle {
  const api = async <T>(
    method: string,
    path: string,
    body?: unknown,
    extra: RequestInit = {},
  ): Promise<T> => {
    const headers: Record<string, string> = { authorization: `Bearer ${o.token}` };
    if (body !== undefined && !extra.body) headers['content-type'] = 'application/json';
    const res = await fetch(`${o.apiUrl}/api/v1${path}`, {
      method,
      headers: { ...headers, ...(extra.headers as Record<string, string> | undefined) },
      body: extra.body ?? (body === undefined ? undefined : JSON.stringify(body)),
      ...(extra.body ? { duplex: 'half' } : {}),
      signal: AbortSignal.timeout(120_000),
    } as RequestInit);
    const text = await res.text();
    if (!res.ok)
      throw new SimError('FLOTILLA_ERR_SIM_SERVER', `${method} ${path}: ${res.status} ${text.slice(0, 400)}`);
    return (text ? JSON.parse(text) : null) as T;
  };

  return {
    apiUrl: o.apiUrl,
    dashboardUrl: o.dashboardUrl,
    token: o.token,
    mqtt: o.mqtt,
    artifactOrigin: o.artifactOrigin ?? o.apiUrl,

    async registerDevices(devices) {
      const mqttPasswords = new Map<string, string>();
      const res = await runPool(devices, 16, async (d) => {
        const answer = await api<{ mqtt?: { password: string } }>('POST', '/devices/register', {
          deviceId: d.id,
          publicKey: d.publicKeyHex,
          proof: d.proof,
          hardware: d.hardware,
        });
        // An external broker's credential, issued once the device is accepted (auto-accept here).
        if (answer.mqtt) mqttPasswords.set(d.id, answer.mqtt.password);
        if (d.tags.length) await api('PUT', `/devices/${d.id}/placement`, { tags: d.tags });
      });
      const bad = res.find((r) => !r.ok);
      if (bad && !bad.ok) throw bad.error;
      return { mqttPasswords };
    },

    async publishRelease(r) {
      const size = (await stat(r.bundlePath)).size;
      await api('POST', '/releases/bundle', undefined, {
        headers: { 'content-type': 'application/vnd.flotilla.bundle', 'content-length': String(size) },
        body: createReadStream(r.bundlePath) as unknown as RequestInit['body'],
      });
    },

    async startRollout(x) {
      const policy = {
        target: x.devices ? { devices: x.devices } : { hardware: undefined },
        phases: x.phases.map((p) => ({
          name: p.name,
          ...(p.count !== undefined ? { count: p.count } : { percent: p.percent ?? 100 }),
          errorThreshold: p.errorThreshold ?? 0,
          successThreshold: p.successThreshold ?? 100,
          minExecuted: p.minExecuted ?? 1,
        })),
        maxConcurrent: x.maxConcurrent ?? 50,
        deviceTimeoutSeconds: x.deviceTimeoutSeconds ?? 600,
        retries: {
          failed: x.retries?.failed ?? 0,
          rolledBack: x.retries?.rolledBack ?? 0,
          timedOut: x.retries?.timedOut ?? 0,
        },
      };
      if (!x.devices) policy.target = {} as never;
      const r = await api<{ id: string }>('POST', '/rollouts', { name: x.name, release: x.release, policy });
      return r.id;
    },

    async rollout(id) {
      return toView(await api<RawRollout>('GET', `/rollouts/${id}`));
    },

    async deployments(id) {
      const r = await api<{ items: { deviceId: string; state: string; failureReason: string | null }[] }>(
        'GET',
        `/rollouts/${id}/deployments`,
      );
      return r.items.map(
        (d): DeploymentView => ({ deviceId: d.deviceId, state: d.state, failureReason: d.failureReason }),
      );
    },

    async onlineCount() {
      return (await api<{ total: number }>('GET', '/devices?online=true&limit=1')).total;
    },

    async deviceVersions() {
      const out = new Map<string, string | null>();
      for (let offset = 0; ; offset += 1000) {
        const r = await api<{ items: { id: string; version: string | null }[]; total: number }>(
          'GET',
          `/devices?limit=1000&offset=${offset}`,
        );
        for (const d of r.items) out.set(d.id, d.version);
        if (offset + 1000 >= r.total) break;
      }
      return out;
    },

    close: o.close,
  };
}

interface RawRollout {
  id: string;
  release: string;
  status: string;
  summary: {
    release: string;
    status: string;
    currentPhase: number;
    pause:
      | { kind: 'operator'; note: string | null }
      | { kind: 'error-threshold'; phase: number; failed: number; total: number; threshold: number }
      | null;
    phases: {
      name: string;
      total: number;
      healthy: number;
      failed: number;
      rolledBack: number;
      status: string;
    }[];
    totals: { devices: number; healthy: number; failed: number; inFlight: number; notStarted: number };
  };
}

function toView(raw: RawRollout): RolloutView {
  const summary = raw.summary;
  const pause = summary.pause;
  return {
    id: raw.id,
    release: summary.release,
    status: summary.status,
    currentPhase: summary.currentPhase,
    phases: summary.phases.map((phase) => ({
      name: phase.name,
      total: phase.total,
      healthy: phase.healthy,
      failed: phase.failed,
      status: phase.status,
    })),
    totals: {
      ...summary.totals,
      rolledBack: summary.phases.reduce((sum, phase) => sum + phase.rolledBack, 0),
    },
    pause: pause
      ? {
          kind: pause.kind,
          detail:
            pause.kind === 'error-threshold'
              ? `${pause.failed} of ${pause.total} devices in phase ${pause.phase + 1} failed (threshold ${pause.threshold}%)`
              : `paused by an operator${pause.note ? `: ${pause.note}` : ''}`,
        }
      : null,
  };
}

/** A free loopback port in 20000-31999, below Linux's ephemeral range (32768-60999). */
async function stablePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const s = createNetServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new SimError('FLOTILLA_ERR_SIM_SERVER', 'no free loopback port in 20000-31999');
}
