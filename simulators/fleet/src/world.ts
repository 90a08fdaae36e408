import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '@flotilla/agent';
import { writeBundle } from '@flotilla/image';
import { encodeKeyFile, generateTrustSet, type TrustSet } from '@flotilla/protocol';
import { createAgentLauncher, type TransportFactory } from './agent-wiring.js';
import type { SimDevice } from './device.js';
import { SimError } from './errors.js';
import type { FaultProfile } from './faults.js';
import { Fleet } from './fleet.js';
import type { AgentLauncher, ServerHandle } from './ports.js';
import { type SimServer, startSimServer } from './server-wiring.js';
import { buildSimFirmware, type SimFirmware } from './sim-firmware.js';
import { defaultTransport } from './transport-wiring.js';

/**
 * A whole simulated world: TEST-ONLY keys, signed firmware, a real server, and a fleet of real
 * agents. The demo, the e2e tests and the benchmark all start here.
 */
export interface WorldOptions {
  devices: number;
  /** Work directory (default: a fresh temp dir, removed by close()). */
  workDir?: string;
  keepWorkDir?: boolean;
  hardware?: string;
  /** Image size: `standard` (demo) or `light` (tiny images, for thousands of devices). */
  size?: 'standard' | 'light';
  faults?: FaultProfile[];
  seed?: number;
  /** Agent timings scale (backoffs, health retries); < 1 makes faults resolve faster. */
  timeScale?: number;
  bootConcurrency?: number;
  /** Server to use instead of an embedded one started here (e.g. a separate process). */
  server?: (o: { dataDir: string; keysDir: string; trust: TrustSet }) => Promise<ServerHandle>;
  launcher?: AgentLauncher;
  /** The agents' MQTT transport when no `launcher` is given (e.g. one that records what was acknowledged). */
  transport?: TransportFactory;
  /** How long a device stays down when it reboots into an update (default 200 ms). */
  rebootDelayMs?: number;
  /** Agent limits over the time-scaled ones (e.g. a download backoff that outlasts a server restart). */
  agentLimits?: AgentConfig['limits'];
  onDeviceEvent?: (device: SimDevice, what: string) => void;
  log?: (line: string) => void;
}

export interface World {
  workDir: string;
  trust: TrustSet;
  firmware: SimFirmware;
  server: ServerHandle;
  /** The embedded server when this world started one (crash / restart for fault tests). */
  simServer: SimServer | null;
  fleet: Fleet;
  /** Uploads the releases of the story to the server. */
  publish(version: string): Promise<void>;
  /** Writes the `.flot` bundle of a release (USB stick for a field engineer); returns its path. */
  bundle(version: string): Promise<string>;
  close(): Promise<void>;
}

export const HARDWARE = 'flotilla-sim-board';

export const IMAGE_SIZES = {
  standard: { partitionSize: 8 * 1024 * 1024, files: 40, fileSize: 128 * 1024 },
  light: { partitionSize: 256 * 1024, files: 4, fileSize: 8 * 1024 },
} as const;

/** Everything of a world but the fleet: keys, firmware, the server with 1.0.0 published. */
export interface WorldBase {
  workDir: string;
  trust: TrustSet;
  firmware: SimFirmware;
  hardware: string;
  server: ServerHandle;
  simServer: SimServer | null;
  publish(version: string): Promise<void>;
  bundle(version: string): Promise<string>;
  /** Runs `fn` when the world closes (before the server stops). */
  onClose(fn: () => Promise<void>): void;
  close(): Promise<void>;
}

/**
 * Keys, signed firmware and a server with 1.0.0 uploaded, and no devices: a fleet can then be
 * built here (`startWorld`) or in other processes (the fleet benchmark's workers).
 */
export async function prepareWorld(o: Omit<WorldOptions, 'devices'>): Promise<WorldBase> {
  const log = o.log ?? (() => undefined);
  const workDir = o.workDir ?? (await mkdtemp(join(tmpdir(), 'flotilla-sim-')));
  await mkdir(workDir, { recursive: true });
  const cleanup: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
    if (!o.keepWorkDir && !o.workDir) await rm(workDir, { recursive: true, force: true });
  };
  try {
    log('generating TEST-ONLY keys');
    const trust = generateTrustSet({ now: new Date(), rootKeys: 1, rootThreshold: 1 });
    const keysDir = join(workDir, 'keys-TEST-ONLY');
    await writeKeys(keysDir, trust);

    const size = IMAGE_SIZES[o.size ?? 'standard'];
    const hardware = o.hardware ?? HARDWARE;
    log(`building and signing firmware (${size.partitionSize / 1024} KiB ext4 images)`);
    const firmware = await buildSimFirmware({
      outDir: join(workDir, 'firmware'),
      keys: { release: trust.keys.release[0]!, recovery: trust.keys.recovery[0]! },
      hardware,
      partitionSize: size.partitionSize,
      files: size.files,
      fileSize: size.fileSize,
    });

    log('starting the server');
    let simServer: SimServer | null = null;
    const startEmbedded = async (x: { dataDir: string; keysDir: string; trust: TrustSet }) => {
      simServer = await startSimServer(x);
      return simServer;
    };
    const server = await (o.server ?? startEmbedded)({
      dataDir: join(workDir, 'server'),
      keysDir,
      trust,
    });
    cleanup.push(() => server.close());
    const bundles = new Map<string, string>();
    const bundle = async (version: string) => {
      const r = firmware.releases.get(version);
      if (!r)
        throw new SimError(
          'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
          `no release ${version} in the simulated firmware`,
        );
      let path = bundles.get(version);
      if (!path) {
        path = join(workDir, 'firmware', `${version}.flot`);
        await writeBundle({ manifest: r.manifest, imagePath: r.imagePath, sbom: r.sbom, output: path });
        bundles.set(version, path);
      }
      return path;
    };
    const publish = async (version: string) => {
      await server.publishRelease({ bundlePath: await bundle(version), version });
    };
    await publish('1.0.0');
    return {
      workDir,
      trust,
      firmware,
      hardware,
      server,
      simServer,
      publish,
      bundle,
      onClose: (fn) => cleanup.push(fn),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function startWorld(o: WorldOptions): Promise<World> {
  const log = o.log ?? (() => undefined);
  const base = await prepareWorld(o);
  const { workDir, trust, firmware, hardware, server, simServer, publish, bundle, close } = base;
  try {
    log(`provisioning ${o.devices} devices on 1.0.0`);
    const fleet = await Fleet.create({
      dir: join(workDir, 'fleet'),
      count: o.devices,
      hardware,
      baseImage: firmware.releases.get('1.0.0')!.imagePath,
      format: firmware.format,
      slotSize: firmware.partitionSize,
      trustRoot: trust.root,
      launcher:
        o.launcher ??
        createAgentLauncher({
          factoryRelease: firmware.releases.get('1.0.0')!.manifestPath,
          transport: o.transport ?? defaultTransport,
          limits: o.agentLimits,
        }),
      mqtt: server.mqtt,
      artifactOrigin: server.artifactOrigin,
      faults: o.faults,
      seed: o.seed,
      concurrency: o.bootConcurrency,
      timeScale: o.timeScale,
      ...(o.rebootDelayMs !== undefined ? { rebootDelayMs: o.rebootDelayMs } : {}),
      register: (devices) => server.registerDevices(devices),
      onEvent: o.onDeviceEvent,
    });
    base.onClose(() => fleet.close());
    return { workDir, trust, firmware, server, simServer, fleet, publish, bundle, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The TEST-ONLY keys of this run, as `flotilla keys init` would write them (mode 0600). */
export async function writeKeys(dir: string, trust: TrustSet): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const [role, keys] of Object.entries(trust.keys)) {
    let i = 0;
    for (const k of keys)
      await writeFile(
        join(dir, `${role}-${i++}.key`),
        encodeKeyFile(k, role as never, `TEST-ONLY demo ${role} key`),
        {
          mode: 0o600,
        },
      );
  }
  await writeFile(join(dir, 'root.json'), `${JSON.stringify(trust.root, null, 2)}\n`);
}
