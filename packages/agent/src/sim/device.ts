import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Slot } from '@flotilla/protocol';
import type { AgentConfig, AgentDeps } from '../agent/deps.js';
import type { RebootAction } from '../agent/reboot.js';
import { FileBootloader } from '../bootloader/file-bootloader.js';
import type { Bootloader } from '../bootloader/types.js';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { Fetcher } from '../download/fetcher.js';
import type { HealthCheck } from '../health/checks.js';
import type { HookRunner } from '../hooks/hooks.js';
import type { UpdateLock } from '../hooks/update-lock.js';
import { AGENT_LIMITS } from '../limits.js';
import type { Logger } from '../logger.js';
import { FileOutbox } from '../report/outbox.js';
import { FileSlotDevice, SlotSet } from '../slots/slot-device.js';
import { FileSecurityFloor } from '../state/security-floor.js';
import { FileStateStore } from '../state/store.js';
import type { Transport } from '../transport/types.js';
import { FileTrustStore } from '../trust/trust-store.js';
import { faultyBootloader, faultyFloor, faultyOutbox, faultySlots, faultyStore, PowerCut } from './faults.js';

export interface SimDeviceOptions {
  dir: string;
  deviceId: string;
  hardware: string;
  slotSize: number;
  /** Bytes of the factory image, written to slot A. */
  factoryImage: Uint8Array;
  /** Its signed release (envelope), if the factory image is a known release. */
  factoryRelease?: unknown;
  /** The signed root metadata the device ships with. */
  root: unknown;
  bootlimit?: number;
}

/**
 * A device made of files — two slot images, a file bootloader, a data directory and a trust
 * directory — for the fleet simulator and the agent's own crash tests. Everything the agent
 * touches survives a "power cut" exactly as it would on a device: the state is whatever was
 * fsynced and renamed.
 */
export class SimDevice {
  readonly bootloader: FileBootloader;
  /** One per device across its lives, like the files it reads (it remembers what it verified). */
  private trustStore: FileTrustStore | null = null;
  constructor(
    readonly dir: string,
    readonly deviceId: string,
    readonly hardware: string,
  ) {
    this.bootloader = new FileBootloader(join(dir, 'bootloader.json'));
  }

  get paths() {
    const d = this.dir;
    return {
      slotA: join(d, 'slot-A.img'),
      slotB: join(d, 'slot-B.img'),
      data: join(d, 'data'),
      state: join(d, 'data', 'state.json'),
      securityFloor: join(d, 'data', 'security-floor.json'),
      outbox: join(d, 'data', 'outbox'),
      trust: join(d, 'trust'),
      factoryRelease: join(d, 'factory-release.json'),
    };
  }

  slotPath(s: Slot): string {
    return s === 'A' ? this.paths.slotA : this.paths.slotB;
  }

  static async create(o: SimDeviceOptions): Promise<SimDevice> {
    const dev = new SimDevice(o.dir, o.deviceId, o.hardware);
    const p = dev.paths;
    await mkdir(p.data, { recursive: true });
    await mkdir(p.trust, { recursive: true });
    for (const path of [p.slotA, p.slotB]) {
      const fh = await open(path, 'w');
      await fh.truncate(o.slotSize);
      await fh.close();
    }
    const fh = await open(p.slotA, 'r+');
    await fh.write(o.factoryImage, 0, o.factoryImage.length, 0);
    await fh.close();
    await writeFile(join(p.trust, 'root.json'), JSON.stringify(o.root));
    if (o.factoryRelease) await writeFile(p.factoryRelease, JSON.stringify(o.factoryRelease));
    await FileBootloader.create(join(o.dir, 'bootloader.json'), 'A', o.bootlimit ?? 3);
    return dev;
  }

  /** Power-on: what the bootloader does (count the trial, maybe fall back), then the agent may start. */
  powerOn(): Promise<Slot> {
    return this.bootloader.simulateBoot();
  }

  config(extra: Partial<AgentConfig> = {}): AgentConfig {
    return {
      deviceId: this.deviceId,
      hardware: this.hardware,
      dataDir: this.paths.data,
      factoryReleaseFile: this.paths.factoryRelease,
      ...extra,
    };
  }

  private trust(): FileTrustStore {
    if (!this.trustStore) this.trustStore = new FileTrustStore(this.paths.trust);
    return this.trustStore;
  }

  deps(o: {
    transport: Transport;
    fetcher: Fetcher;
    reboot: RebootAction;
    clock?: Clock;
    health?: HealthCheck[];
    hooks?: HookRunner;
    updateLock?: UpdateLock;
    logger?: Logger;
    powerCut?: PowerCut;
    onTransition?: AgentDeps['onTransition'];
    /** Another backend over real env files (U-Boot, GRUB) instead of the file bootloader. */
    bootloader?: Bootloader;
  }): AgentDeps {
    const p = this.paths;
    const cut = o.powerCut ?? new PowerCut();
    const devices = {
      A: new FileSlotDevice('A', p.slotA),
      B: new FileSlotDevice('B', p.slotB),
    };
    return {
      store: faultyStore(new FileStateStore(p.state), cut.hit),
      bootloader: faultyBootloader(o.bootloader ?? this.bootloader, cut.hit),
      slots: o.powerCut ? faultySlots(devices, cut) : new SlotSet(devices),
      transport: o.transport,
      fetcher: o.fetcher,
      clock: o.clock ?? systemClock,
      reboot: o.reboot,
      trust: this.trust(),
      outbox: faultyOutbox(new FileOutbox(p.outbox, AGENT_LIMITS.outbox), cut.hit),
      securityFloor: faultyFloor(new FileSecurityFloor(p.securityFloor), cut.hit),
      faults: cut.hit,
      ...(o.health ? { health: o.health } : {}),
      ...(o.hooks ? { hooks: o.hooks } : {}),
      ...(o.updateLock ? { updateLock: o.updateLock } : {}),
      ...(o.logger ? { logger: o.logger } : {}),
      ...(o.onTransition ? { onTransition: o.onTransition } : {}),
    };
  }
}
