import { randomBytes } from 'node:crypto';
import { newToken, type SimServer, startSimServer, startWorld, type World } from '@flotilla/fleet-simulator';
import { generateKeyPair, makeDevicePassword, toHex } from '@flotilla/protocol';

/**
 * The world the browser tests look at: the real server (serving the dashboard), signed demo
 * firmware, and simulated devices running the real agent — via the fleet simulator's public API.
 * Tokens for an operator and a viewer are made through the admin API, as an admin would.
 */
export interface DashboardWorld {
  world: World;
  /** The server in this process (its store, for query plans). */
  sim: SimServer;
  origin: string;
  adminToken: string;
  operatorToken: string;
  viewerToken: string;
  deviceIds: string[];
  api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

export async function startDashboardWorld(devices: number): Promise<DashboardWorld> {
  const adminToken = newToken();
  let sim: SimServer | null = null;
  const world = await startWorld({
    devices,
    size: 'light',
    timeScale: 0.05,
    server: async (x) => {
      sim = await startSimServer({
        dataDir: x.dataDir,
        keysDir: x.keysDir,
        adminToken,
        rolloutTickMs: 250,
        // The server's versions-over-time samples, often enough to see a rollout in a test.
        versionSampleIntervalMs: 1000,
      });
      return sim;
    },
  });
  try {
    const origin = new URL(world.server.dashboardUrl).origin;
    const api = async <T>(method: string, path: string, body?: unknown, token = adminToken) => {
      const res = await fetch(`${origin}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
    };
    const token = async (name: string, role: string) => {
      const r = await api<{ token: string }>('POST', '/tokens', { name, role });
      if (r.status !== 201) throw new Error(`token ${role}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.token;
    };
    await world.fleet.powerOn();
    await world.fleet.waitFor('online', async () => (await world.server.onlineCount()) >= devices, 60_000);
    return {
      world,
      sim: sim!,
      origin,
      adminToken,
      operatorToken: await token('ops alice', 'operator'),
      viewerToken: await token('auditor bob', 'viewer'),
      deviceIds: world.fleet.devices.map((d) => d.id),
      api,
      close: () => world.close(),
    };
  } catch (e) {
    await world.close();
    throw e;
  }
}

/**
 * Registers a device the way a new one joins with a provisioning token that needs an operator's
 * acceptance: it is then `pending` until someone accepts it.
 */
export async function registerPendingDevice(w: DashboardWorld, deviceId: string, hardware: string) {
  const pt = await w.api<{ token: string }>('POST', '/provisioning-tokens', {
    label: 'browser test: needs acceptance',
    ttlSeconds: 600,
    autoAccept: false,
  });
  if (pt.status !== 201) throw new Error(`provisioning token: ${pt.status} ${JSON.stringify(pt.body)}`);
  const key = generateKeyPair();
  const r = await w.api<{ device: { status: string } }>(
    'POST',
    '/devices/register',
    {
      deviceId,
      publicKey: toHex(key.publicKey),
      proof: makeDevicePassword(deviceId, key, new Date(), randomBytes(8).toString('hex')),
      hardware,
      provisioningToken: pt.body.token,
    },
    '',
  );
  if (r.status !== 200 || r.body.device.status !== 'pending')
    throw new Error(`register: ${r.status} ${JSON.stringify(r.body)}`);
}
