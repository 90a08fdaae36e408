import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReleaseManifest, SignedRelease, SignedRoot } from '@flotilla/protocol';
import { createAgentLauncher } from './agent-wiring.js';
import { BehaviourReader } from './behaviour.js';
import { SimError } from './errors.js';
import { Fleet } from './fleet.js';
import { recordAcknowledged } from './history.js';
import { httpServerHandle } from './server-wiring.js';
import { defaultTransport } from './transport-wiring.js';

/**
 * `flotilla-sim --server URL`: simulated devices (the real agent on file-backed slots) attached to
 * a server someone else started. Everything comes from the server's public API with an operator
 * token: the trust root, the MQTT address, the factory release (manifest + image); the devices
 * register by their own keys like `flotilla devices register` would.
 */
export interface AttachOptions {
  /** API base URL, e.g. `http://127.0.0.1:8080`. */
  server: string;
  /** Operator (or admin) API token: device registration and release download. */
  token: string;
  devices: number;
  /** Work directory: slots, agent data (created). */
  dir: string;
  /** Release the devices run at first (default: the newest on the server). */
  release?: string;
  /** Broker URL (`mqtt://host:port`; default: the one the server announces). */
  mqtt?: string;
  /** Device id prefix (ids are `<prefix>-0001`…; default `sim-<random>`, so re-runs do not collide). */
  prefix?: string;
  tags?: string[];
  /** Agent timings (backoffs, health retries); 1 = production. */
  timeScale?: number;
  /** Append every report the broker acknowledged to this file (`recordAcknowledged`). */
  history?: string;
  log?: (line: string) => void;
}

export interface AttachedFleet {
  fleet: Fleet;
  release: string;
  hardware: string;
  mqtt: string;
  deviceIds: string[];
  close(): Promise<void>;
}

interface ServerInfo {
  endpoints: { api?: string; mqtt?: string };
}

export async function attachFleet(o: AttachOptions): Promise<AttachedFleet> {
  const log = o.log ?? (() => undefined);
  const api = o.server.replace(/\/+$/, '');
  const get = async (path: string): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(`${api}${path}`, {
        headers: { authorization: `Bearer ${o.token}` },
        signal: AbortSignal.timeout(120_000),
      });
    } catch (cause) {
      throw new SimError('FLOTILLA_ERR_SIM_SERVER', `${api} is not reachable (${(cause as Error).message})`, {
        cause,
      });
    }
    if (!res.ok)
      throw new SimError(
        'FLOTILLA_ERR_SIM_SERVER',
        `GET ${path}: ${res.status} ${(await res.text()).slice(0, 300)}`,
      );
    return res;
  };
  const json = async <T>(path: string): Promise<T> => (await (await get(path)).json()) as T;

  const info = await json<ServerInfo>('/api/v1/server');
  const mqttUrl = o.mqtt ?? info.endpoints.mqtt;
  if (!mqttUrl)
    throw new SimError(
      'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
      'the server announces no MQTT listener; pass --mqtt URL',
    );
  const mqtt = new URL(mqttUrl);
  if (mqtt.protocol !== 'mqtt:')
    throw new SimError(
      'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
      `--mqtt ${mqttUrl}: simulated devices speak plain mqtt://`,
    );
  const root = await json<SignedRoot>('/api/v1/root');

  const version = o.release ?? (await newestRelease(json));
  const manifest = await json<SignedRelease>(`/api/v1/releases/${encodeURIComponent(version)}/manifest`);
  const image = manifest.signed.image;
  await mkdir(join(o.dir, 'factory'), { recursive: true });
  const manifestPath = join(o.dir, 'factory', `${version}.manifest.json`);
  await writeFile(manifestPath, `${JSON.stringify(manifest)}\n`);
  const imagePath = join(o.dir, 'factory', `${version}.img`);
  log(`downloading release ${version} (${image.size} bytes)`);
  await download(get, `/api/v1/artifacts/${image.sha256}`, imagePath, image);

  // Devices boot what the image says (/etc/flotilla/sim-behaviour.json): refuse an image that
  // carries none now, instead of a fleet of devices that never come up.
  const behaviour = new BehaviourReader(image.format);
  const view = await behaviour.read(imagePath);
  if (view.unreadable)
    throw new SimError(
      'FLOTILLA_ERR_SIM_BEHAVIOUR',
      `release ${version}: ${view.unreadable} (build simulator firmware from firmware-images/recipes)`,
    );

  const hardware = manifest.signed.compatible[0]!;
  const prefix = o.prefix ?? `sim-${randomBytes(2).toString('hex')}`;
  const handle = httpServerHandle({
    apiUrl: api,
    dashboardUrl: api,
    mqtt: { host: mqtt.hostname, port: Number(mqtt.port || 1883) },
    token: o.token,
    close: async () => undefined,
  });
  log(`provisioning ${o.devices} devices (${prefix}-…) on ${version}, hardware ${hardware}`);
  const fleet = await Fleet.create({
    dir: join(o.dir, 'fleet'),
    count: o.devices,
    idPrefix: prefix,
    hardware,
    ...(o.tags ? { tags: o.tags } : {}),
    baseImage: imagePath,
    format: image.format,
    slotSize: image.size,
    trustRoot: root,
    launcher: createAgentLauncher({
      factoryRelease: manifestPath,
      transport: o.history ? recordAcknowledged(defaultTransport, o.history) : defaultTransport,
    }),
    mqtt: handle.mqtt,
    artifactOrigin: api,
    timeScale: o.timeScale ?? 1,
    register: (devices) => handle.registerDevices(devices),
  });
  try {
    await fleet.powerOn();
  } catch (err) {
    await fleet.close();
    throw err;
  }
  return {
    fleet,
    release: version,
    hardware,
    mqtt: mqttUrl,
    deviceIds: fleet.devices.map((d) => d.id),
    close: () => fleet.close(),
  };
}

async function newestRelease(json: <T>(path: string) => Promise<T>): Promise<string> {
  const { items } = await json<{ items: { version: string; kind: string; created: string }[] }>(
    '/api/v1/releases',
  );
  const releases = items
    .filter((r) => r.kind === 'release')
    .sort((a, b) => a.created.localeCompare(b.created));
  const newest = releases.at(-1);
  if (!newest)
    throw new SimError(
      'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
      'the server has no release for the devices to run; upload one (`flotilla release create FILE.flot`) or pass --release',
    );
  return newest.version;
}

/** Streams the factory image to `path`, checking size and sha256 against the signed manifest. */
async function download(
  get: (path: string) => Promise<Response>,
  path: string,
  to: string,
  image: ReleaseManifest['image'],
): Promise<void> {
  const res = await get(path);
  if (!res.body) throw new SimError('FLOTILLA_ERR_SIM_SERVER', `GET ${path}: empty body`);
  const hash = createHash('sha256');
  let size = 0;
  const body = Readable.fromWeb(res.body as never);
  body.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
    if (size > image.size)
      body.destroy(new SimError('FLOTILLA_ERR_SIM_SERVER', `${path}: larger than signed`));
  });
  await pipeline(body, createWriteStream(to));
  if (size !== image.size || hash.digest('hex') !== image.sha256)
    throw new SimError('FLOTILLA_ERR_SIM_SERVER', `${path}: does not match the signed release manifest`);
}
