import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageFormat, KeyPair, SignedRoot } from '@flotilla/protocol';
import { generateKeyPair, makeDevicePassword, toHex } from '@flotilla/protocol';
import { BehaviourReader, type ImageFileReader } from './behaviour.js';
import { SimDevice } from './device.js';
import { SimError } from './errors.js';
import { assignFaults, type FaultProfile } from './faults.js';
import { type FaultProxy, startFaultProxy } from './net-proxy.js';
import { runPool, sleep } from './pool.js';
import type { AgentLauncher, RegisteredDevices } from './ports.js';
import { createRng } from './rng.js';
import { type SlotName, SlotStore } from './slot-store.js';

/**
 * N simulated devices in one process. Devices share base images on disk (content-addressed) but
 * each runs its own agent, MQTT session, downloads and slot writes. Devices with a network fault
 * reach the server through a loopback fault proxy per profile.
 */
export interface FleetDeviceInfo {
  id: string;
  publicKeyHex: string;
  /** A device password: proves the device holds the key it registers. */
  proof: string;
  hardware: string;
  tags: string[];
}

export interface FleetOptions {
  dir: string;
  count: number;
  idPrefix?: string;
  hardware: string;
  tags?: string[];
  /** The image every device runs at first, in slot A (slot B starts empty). */
  baseImage: string;
  format: ImageFormat;
  slotSize: number;
  bootlimit?: number;
  trustRoot: SignedRoot;
  launcher: AgentLauncher;
  mqtt: { host: string; port: number };
  /** Origin of the artifact server (`http://127.0.0.1:PORT`): proxied devices get a rewritten URL. */
  artifactOrigin: string;
  faults?: FaultProfile[];
  seed?: number;
  /** Devices booting at once. */
  concurrency?: number;
  rebootDelayMs?: number;
  timeScale?: number;
  imageReader?: ImageFileReader;
  /** Server side of provisioning: registers the devices' public keys before they connect. */
  register: (devices: FleetDeviceInfo[]) => Promise<RegisteredDevices | undefined>;
  onEvent?: (device: SimDevice, what: string) => void;
}

export class Fleet {
  readonly devices: SimDevice[] = [];
  readonly byId = new Map<string, SimDevice>();
  readonly proxies = new Map<string, { http?: FaultProxy; mqtt?: FaultProxy }>();
  readonly store: SlotStore;
  readonly log: { at: number; device: string; what: string }[] = [];

  private constructor(private readonly options: FleetOptions) {
    this.store = new SlotStore(join(options.dir, 'store'));
  }

  static async create(options: FleetOptions): Promise<Fleet> {
    if (!Number.isInteger(options.count) || options.count < 1 || options.count > 20_000)
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `device count ${options.count} (1-20000)`);
    const fleet = new Fleet(options);
    await fleet.build();
    return fleet;
  }

  private async build(): Promise<void> {
    const options = this.options;
    const seed = options.seed ?? 1;
    const rng = createRng(seed);
    const prefix = options.idPrefix ?? 'sim';
    const width = String(options.count).length < 4 ? 4 : String(options.count).length;
    const ids = Array.from(
      { length: options.count },
      (_, i) => `${prefix}-${String(i + 1).padStart(width, '0')}`,
    );
    const faults = assignFaults(ids, options.faults ?? [], seed);
    await this.startProxies(options.faults ?? [], seed);

    const baseSha = await this.store.addBase(options.baseImage);
    const behaviour = new BehaviourReader(options.format, options.imageReader);
    const infos: FleetDeviceInfo[] = [];
    await mkdir(join(options.dir, 'devices'), { recursive: true });
    // Devices are set up 32 at a time (the fsyncs of their first state files overlap); the
    // order of `devices` stays the order of ids.
    const built = await runPool(ids, 32, async (id) => {
      const key: KeyPair = generateKeyPair();
      const fault = faults.get(id) ?? null;
      const dir = join(options.dir, 'devices', id);
      const slots = await this.store.device(dir, { slotSize: options.slotSize, initial: { A: baseSha } });
      const proxies = fault ? this.proxies.get(fault.name) : undefined;
      const mqtt = proxies?.mqtt ? { host: proxies.mqtt.host, port: proxies.mqtt.port } : options.mqtt;
      const http = proxies?.http;
      const rewriteUrl = http
        ? (url: string) =>
            url.startsWith(options.artifactOrigin)
              ? `http://${http.host}:${http.port}${url.slice(options.artifactOrigin.length)}`
              : url
        : (url: string) => url;
      const device = new SimDevice({
        id,
        key,
        hardware: options.hardware,
        tags: options.tags ?? [],
        dir,
        slots,
        behaviour,
        launcher: options.launcher,
        base: { trustRoot: options.trustRoot, timeScale: options.timeScale ?? 1 },
        mqtt,
        rewriteUrl,
        fault,
        rng: rng.fork(id),
        rebootDelayMs: options.rebootDelayMs ?? 200,
        onEvent: (d, what) => {
          this.log.push({ at: Date.now(), device: d.id, what });
          if (this.log.length > 10_000) this.log.shift();
          options.onEvent?.(d, what);
        },
      });
      await device.flash('A' as SlotName, options.bootlimit ?? 2);
      const info: FleetDeviceInfo = {
        id,
        publicKeyHex: toHex(key.publicKey),
        proof: makeDevicePassword(id, key, new Date(), randomBytes(16).toString('hex')),
        hardware: options.hardware,
        tags: options.tags ?? [],
      };
      return { device, info };
    });
    for (const r of built) {
      if (!r.ok) throw r.error;
      this.devices.push(r.value.device);
      this.byId.set(r.value.device.id, r.value.device);
      infos.push(r.value.info);
    }
    const registered = await options.register(infos);
    for (const [id, password] of registered?.mqttPasswords ?? [])
      this.byId.get(id)?.useMqttPassword(password);
  }

  private async startProxies(profiles: FaultProfile[], seed: number): Promise<void> {
    const http = new URL(this.options.artifactOrigin);
    let i = 0;
    for (const p of profiles) {
      i++;
      const entry: { http?: FaultProxy; mqtt?: FaultProxy } = {};
      if (p.network)
        entry.http = await startFaultProxy({
          upstreamHost: http.hostname,
          upstreamPort: Number(http.port),
          faults: p.network,
          seed: seed + i,
        });
      if (p.mqttNetwork)
        entry.mqtt = await startFaultProxy({
          upstreamHost: this.options.mqtt.host,
          upstreamPort: this.options.mqtt.port,
          faults: p.mqttNetwork,
          seed: seed + 1000 + i,
        });
      this.proxies.set(p.name, entry);
    }
  }

  /** Powers every device on, `concurrency` at a time. */
  async powerOn(concurrency = this.options.concurrency ?? 50): Promise<void> {
    const res = await runPool(this.devices, concurrency, (d) => d.powerOn());
    const failed = res.filter((r) => !r.ok);
    if (failed.length)
      throw new SimError(
        'FLOTILLA_ERR_SIM_POWER_ON',
        `${failed.length} devices failed to power on: ${String((failed[0] as { error: unknown }).error)}`,
      );
  }

  bytesDownloaded(): number {
    return this.devices.reduce((n, d) => n + d.counters.bytesDownloaded, 0);
  }

  /** What full images would have cost for every payload the devices downloaded. */
  fullEquivalentBytes(): number {
    let bytes = 0;
    for (const device of this.devices)
      for (const download of device.downloads.values()) bytes += download.fullSize;
    return bytes;
  }

  /** Devices per release their running image says it is. */
  versions(): Map<string, number> {
    const devicesPerRelease = new Map<string, number>();
    for (const device of this.devices) {
      const release = device.current?.release ?? '(none)';
      devicesPerRelease.set(release, (devicesPerRelease.get(release) ?? 0) + 1);
    }
    return devicesPerRelease;
  }

  /** Polls `check` until it returns true; throws FLOTILLA_ERR_SIM_TIMEOUT naming `what`. */
  async waitFor(
    what: string,
    check: () => boolean | Promise<boolean>,
    timeoutMs: number,
    everyMs = 200,
  ): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > end) throw new SimError('FLOTILLA_ERR_SIM_TIMEOUT', what);
      await sleep(everyMs);
    }
  }

  async close(): Promise<void> {
    await runPool(this.devices, 200, (d) => d.shutdown());
    for (const p of this.proxies.values()) {
      await p.http?.close();
      await p.mqtt?.close();
    }
  }
}
