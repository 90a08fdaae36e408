import { join } from 'node:path';
import { FileBootloader } from '@flotilla/agent';
import type { KeyPair } from '@flotilla/protocol';
import type { BehaviourReader } from './behaviour.js';
import { SimError } from './errors.js';
import type { FaultProfile } from './faults.js';
import { UPDATE_STATES } from './faults.js';
import type { AgentInstance, AgentLauncher, BootRecord, LaunchContext } from './ports.js';
import { PowerGate } from './power.js';
import type { Rng } from './rng.js';
import { SimSlotDevice } from './sim-slot-device.js';
import type { DeviceSlots, SlotName } from './slot-store.js';

/**
 * One simulated board: two file slots, a file bootloader (U-Boot's boot counting), a data
 * directory, a power supply, and the real agent running on top. Power-on runs the bootloader's
 * boot decision, looks at the image in the booted slot (does it boot? is it healthy?), and
 * starts the agent; a reboot or a power cut stops the agent and goes around again.
 */
export type DevicePhase = 'off' | 'booting' | 'running' | 'bricked';

export interface DeviceCounters {
  boots: number;
  failedBoots: number;
  powerCuts: number;
  reboots: number;
  bytesDownloaded: number;
  bytesWritten: number;
}

export interface SimDeviceOptions {
  id: string;
  key: KeyPair;
  hardware: string;
  tags: string[];
  dir: string;
  slots: DeviceSlots;
  behaviour: BehaviourReader;
  launcher: AgentLauncher;
  base: Omit<
    LaunchContext,
    | 'deviceId'
    | 'key'
    | 'hardware'
    | 'tags'
    | 'dataDir'
    | 'bootloaderPath'
    | 'bootedSlot'
    | 'slots'
    | 'power'
    | 'health'
    | 'reboot'
    | 'onState'
    | 'onBytes'
    | 'mqtt'
    | 'rewriteUrl'
  >;
  mqtt: { host: string; port: number };
  rewriteUrl: (url: string) => string;
  fault: FaultProfile | null;
  rng: Rng;
  /** Pause between power-off and power-on of a reboot. */
  rebootDelayMs: number;
  onEvent?: (device: SimDevice, what: string) => void;
}

/** Most consecutive failed boots before a board is declared dead (bootlimit is far lower). */
const MAX_FAILED_BOOTS = 10;

export class SimDevice {
  readonly id: string;
  phase: DevicePhase = 'off';
  agentState: string | null = null;
  current: BootRecord | null = null;
  readonly bootHistory: BootRecord[] = [];
  readonly counters: DeviceCounters = {
    boots: 0,
    failedBoots: 0,
    powerCuts: 0,
    reboots: 0,
    bytesDownloaded: 0,
    bytesWritten: 0,
  };
  /** Payloads this device downloaded completely, per deployment attempt. */
  readonly downloads = new Map<
    string,
    { version: string; fullSize: number; method: 'full' | 'delta' | null }
  >();
  private agent: AgentInstance | null = null;
  private power: PowerGate | null = null;
  /** The MQTT password the server issued at registration (external broker only). */
  private mqttPassword: string | undefined;
  private cutsLeft: number;
  private cycling: Promise<void> | null = null;
  private stopped = false;
  readonly bootloader: FileBootloader;

  useMqttPassword(password: string): void {
    this.mqttPassword = password;
  }

  constructor(private readonly options: SimDeviceOptions) {
    this.id = options.id;
    this.cutsLeft = options.fault?.powerCut ? (options.fault.powerCut.times ?? 1) : 0;
    this.bootloader = new FileBootloader(join(options.dir, 'bootloader.json'));
  }

  get fault(): FaultProfile | null {
    return this.options.fault;
  }

  /** First power-on of a freshly flashed board running `slot`. */
  async flash(slot: SlotName, bootlimit: number): Promise<void> {
    await FileBootloader.create(this.bootloader.path, slot, bootlimit);
  }

  /** Powers the board on: boot (retrying failed boots like a watchdog reset) and start the agent. */
  async powerOn(): Promise<void> {
    if (this.phase !== 'off' || this.stopped) return;
    this.phase = 'booting';
    let consecutiveFailures = 0;
    for (;;) {
      const slot = await this.bootloader.simulateBoot();
      const state = await this.bootloader.read();
      const view = await this.options.behaviour.read(this.options.slots.readPath(slot));
      const bootsHere = view.behaviour.boots && !(this.options.fault?.bootFailure && state.trial);
      const record: BootRecord = {
        at: Date.now(),
        slot,
        release: view.release,
        booted: bootsHere,
        behaviour: view.behaviour,
      };
      this.bootHistory.push(record);
      if (this.bootHistory.length > 32) this.bootHistory.shift();
      this.counters.boots++;
      if (bootsHere) {
        this.current = record;
        break;
      }
      this.counters.failedBoots++;
      consecutiveFailures++;
      this.options.onEvent?.(
        this,
        `boot of slot ${slot} failed${view.unreadable ? `: ${view.unreadable}` : ''}`,
      );
      if (consecutiveFailures >= MAX_FAILED_BOOTS && !state.trial) {
        this.phase = 'bricked';
        this.options.onEvent?.(this, 'no slot boots any more');
        return;
      }
    }
    await this.startAgent(this.current as BootRecord);
  }

  private async startAgent(boot: BootRecord): Promise<void> {
    const power = new PowerGate();
    this.power = power;
    const counters = this.counters;
    const slots = {
      A: new SimSlotDevice('A', this.options.slots, power, counters),
      B: new SimSlotDevice('B', this.options.slots, power, counters),
    };
    const failHealth = this.options.fault?.failHealth;
    const ctx: LaunchContext = {
      ...this.options.base,
      deviceId: this.id,
      key: this.options.key,
      hardware: this.options.hardware,
      tags: this.options.tags,
      dataDir: join(this.options.dir, 'data'),
      bootloaderPath: this.bootloader.path,
      bootedSlot: boot.slot,
      slots,
      power,
      mqtt: this.options.mqtt,
      ...(this.mqttPassword ? { mqttPassword: this.mqttPassword } : {}),
      rewriteUrl: this.options.rewriteUrl,
      health: async () => {
        if (failHealth) return { ok: false, reason: failHealth };
        return {
          ok: boot.behaviour.healthy,
          reason: boot.behaviour.healthy ? null : boot.behaviour.healthReason,
        };
      },
      reboot: () => {
        // Like `systemctl reboot`: returns, and the system goes down right after.
        setImmediate(() => {
          this.counters.reboots++;
          void this.cycle('reboot');
        });
      },
      onState: (state, dep) => {
        this.agentState = state;
        if (dep && state === 'Installing')
          this.downloads.set(`${dep.id}#${dep.attempt}`, {
            version: dep.version,
            fullSize: dep.fullSize,
            method: dep.method,
          });
        this.maybeScheduleCut(state, power);
      },
      onBytes: (n) => {
        counters.bytesDownloaded += n;
      },
    };
    this.agent = await this.options.launcher(ctx);
    this.phase = 'running';
  }

  private maybeScheduleCut(state: string, power: PowerGate): void {
    const pc = this.options.fault?.powerCut;
    if (!pc || this.cutsLeft <= 0) return;
    const states = pc.inStates ?? UPDATE_STATES;
    if (!states.includes(state)) return;
    this.cutsLeft--;
    const [min, max] = pc.delayMs ?? [0, 500];
    const delay = this.options.rng.int(min, max);
    setTimeout(() => {
      if (power !== this.power || !power.powered) return; // that boot is already over
      this.counters.powerCuts++;
      this.options.onEvent?.(this, `power cut ${delay} ms after entering ${state}`);
      void this.cycle('power-cut');
    }, delay);
  }

  /** Takes the board down (orderly reboot or power cut) and boots it again. */
  private cycle(kind: 'reboot' | 'power-cut'): Promise<void> {
    if (this.cycling) return this.cycling;
    this.cycling = (async () => {
      try {
        await this.takeDown(kind);
        const offMs =
          kind === 'power-cut' ? (this.options.fault?.powerCut?.offMs ?? 100) : this.options.rebootDelayMs;
        await new Promise((r) => setTimeout(r, offMs));
        await this.powerOn();
      } catch (err) {
        this.options.onEvent?.(this, `power-on failed: ${(err as Error).message}`);
      } finally {
        this.cycling = null;
      }
    })();
    return this.cycling;
  }

  private async takeDown(kind: 'reboot' | 'power-cut' | 'shutdown'): Promise<void> {
    const agent = this.agent;
    const power = this.power;
    this.agent = null;
    this.power = null;
    if (kind === 'power-cut') {
      power?.cut();
      agent?.crash();
    } else {
      // A reboot or shutdown stops the agent like systemd does (SIGTERM, then SIGKILL after a grace).
      if (agent) {
        const grace = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3000).unref());
        const res = await Promise.race([
          agent.stop().then(
            () => 'ok' as const,
            () => 'ok' as const,
          ),
          grace,
        ]);
        if (res === 'timeout') agent.crash();
      }
      power?.cut();
    }
    this.phase = 'off';
    this.agentState = null;
  }

  /** Cuts the power now (tests drive this directly) and powers on again after `offMs`. */
  async powerCut(offMs = 100): Promise<void> {
    if (this.phase !== 'running') return;
    this.counters.powerCuts++;
    await this.takeDown('power-cut');
    await new Promise((r) => setTimeout(r, offMs));
    await this.powerOn();
  }

  /** A field engineer installs a bundle by hand on the running device (no network needed). */
  async installLocal(bundlePath: string): Promise<void> {
    if (!this.agent) throw new SimError('FLOTILLA_ERR_SIM_POWERED_OFF', `${this.id} is ${this.phase}`);
    await this.agent.installLocal(bundlePath);
  }

  /** Shuts the device down for good (end of a simulation). */
  async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.cycling) await this.cycling.catch(() => undefined);
    await this.takeDown('shutdown');
  }
}
