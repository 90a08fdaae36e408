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
    const dir = this.dir;
    return {
      slotA: join(dir, 'slot-A.img'),
      slotB: join(dir, 'slot-B.img'),
      data: join(dir, 'data'),
      state: join(dir, 'data', 'state.json'),
      securityFloor: join(dir, 'data', 'security-floor.json'),
      outbox: join(dir, 'data', 'outbox'),
      trust: join(dir, 'trust'),
      factoryRelease: join(dir, 'factory-release.json'),
    };
  }

  slotPath(slot: Slot): string {
    return slot === 'A' ? this.paths.slotA : this.paths.slotB;
  }

  static async create(options: SimDeviceOptions): Promise<SimDevice> {
    const dev = new SimDevice(options.dir, options.deviceId, options.hardware);
    const paths = dev.paths;
    await mkdir(paths.data, { recursive: true });
    await mkdir(paths.trust, { recursive: true });
    for (const path of [paths.slotA, paths.slotB]) {
      const slotFile = await open(path, 'w');
      try {
        await slotFile.truncate(options.slotSize);
      } finally {
        await slotFile.close();
      }
    }
    const slotA = await open(paths.slotA, 'r+');
    try {
      await slotA.write(options.factoryImage, 0, options.factoryImage.length, 0);
    } finally {
      await slotA.close();
    }
    await writeFile(join(paths.trust, 'root.json'), JSON.stringify(options.root));
    if (options.factoryRelease) await writeFile(paths.factoryRelease, JSON.stringify(options.factoryRelease));
    await FileBootloader.create(join(options.dir, 'bootloader.json'), 'A', options.bootlimit ?? 3);
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

  deps(wiring: {
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
    const paths = this.paths;
    const cut = wiring.powerCut ?? new PowerCut();
    const devices = {
      A: new FileSlotDevice('A', paths.slotA),
      B: new FileSlotDevice('B', paths.slotB),
    };
    return {
      store: faultyStore(new FileStateStore(paths.state), cut.hit),
      bootloader: faultyBootloader(wiring.bootloader ?? this.bootloader, cut.hit),
      slots: wiring.powerCut ? faultySlots(devices, cut) : new SlotSet(devices),
      transport: wiring.transport,
      fetcher: wiring.fetcher,
      clock: wiring.clock ?? systemClock,
      reboot: wiring.reboot,
      trust: this.trust(),
      outbox: faultyOutbox(new FileOutbox(paths.outbox, AGENT_LIMITS.outbox), cut.hit),
      securityFloor: faultyFloor(new FileSecurityFloor(paths.securityFloor), cut.hit),
      faults: cut.hit,
      ...(wiring.health ? { health: wiring.health } : {}),
      ...(wiring.hooks ? { hooks: wiring.hooks } : {}),
      ...(wiring.updateLock ? { updateLock: wiring.updateLock } : {}),
      ...(wiring.logger ? { logger: wiring.logger } : {}),
      ...(wiring.onTransition ? { onTransition: wiring.onTransition } : {}),
    };
  }
}
