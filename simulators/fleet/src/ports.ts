import type { KeyPair, SignedRoot } from '@flotilla/protocol';
import type { SimBehaviour } from './behaviour.js';
import type { PowerGate } from './power.js';
import type { SimSlotDevice } from './sim-slot-device.js';
import type { SlotName } from './slot-store.js';

/**
 * The narrow seams between the simulator and the packages it drives. The simulator's own code
 * (fleet, devices, faults, reboots) is written against these; `agent-wiring.ts` and
 * `server-wiring.ts` are the only files that know the real agent and server APIs.
 */

/** What registration gave the devices: the MQTT password the server issued, where it issues one (external broker). */
export interface RegisteredDevices {
  mqttPasswords: Map<string, string>;
}

/** What the simulator tells the agent about one boot of one device. */
export interface LaunchContext {
  deviceId: string;
  key: KeyPair;
  hardware: string;
  /** The agent's data directory (state file, spool, stored releases). */
  dataDir: string;
  bootloaderPath: string;
  bootedSlot: SlotName;
  slots: Record<SlotName, SimSlotDevice>;
  trustRoot: SignedRoot;
  /** Broker address for this device (possibly a fault proxy). */
  mqtt: { host: string; port: number };
  /** The MQTT password the server issued (external broker); without it the device signs with its key. */
  mqttPassword?: string;
  /** Rewrites artifact URLs of offers (to send the device through a fault proxy); identity by default. */
  rewriteUrl: (url: string) => string;
  power: PowerGate;
  /** Health of the running image: from its sim-behaviour.json, or a fault profile. */
  health: () => Promise<{ ok: boolean; reason: string | null }>;
  /** The agent asks for a reboot: the simulator stops it and boots the device again (soon after). */
  reboot: () => void;
  /** Called after the agent persisted a state (persist-then-act: the state's work starts now). */
  onState: (state: string, deployment: DeploymentInfo | null) => void;
  /** Bytes received from the artifact server. */
  onBytes: (n: number) => void;
  /** Scales agent timings (backoff, health retries) for quick simulations; 1 = production. */
  timeScale: number;
  tags: string[];
}

/** The part of the agent's deployment record the simulator counts (bytes a full image would cost). */
export interface DeploymentInfo {
  id: string;
  attempt: number;
  version: string;
  fullSize: number;
  method: 'full' | 'delta' | null;
}

export interface AgentInstance {
  /** Orderly shutdown (SIGTERM): stop work, close the MQTT session cleanly. */
  stop(): Promise<void>;
  /** Power loss: drop sockets without a goodbye (the broker fires the last will), stop timers. */
  crash(): void;
  /** A field engineer's `flotilla-agent install FILE.flot`: resolves when the agent rests again. */
  installLocal(bundlePath: string): Promise<void>;
}

export type AgentLauncher = (ctx: LaunchContext) => Promise<AgentInstance>;

/** Result of booting a device, for the summary and the tests. */
export interface BootRecord {
  at: number;
  slot: SlotName;
  release: string | null;
  booted: boolean;
  behaviour: SimBehaviour;
}

/** A rollout as the simulator shows it (a projection of the server's rollout summary). */
export interface RolloutView {
  id: string;
  release: string;
  status: string;
  currentPhase: number;
  phases: { name: string; total: number; healthy: number; failed: number; status: string }[];
  totals: {
    devices: number;
    healthy: number;
    failed: number;
    rolledBack: number;
    inFlight: number;
    notStarted: number;
  };
  pause: { kind: string; detail: string } | null;
}

export interface DeploymentView {
  deviceId: string;
  state: string;
  failureReason: string | null;
}

export interface RolloutPhaseInput {
  name: string;
  count?: number;
  percent?: number;
  errorThreshold?: number;
  successThreshold?: number;
  minExecuted?: number;
}

/** The server as the simulator drives it: the demo, the e2e tests and the benchmark share this. */
export interface ServerHandle {
  readonly apiUrl: string;
  readonly dashboardUrl: string;
  /** Admin API token of this run (TEST-ONLY; the demo prints it for signing in to the dashboard). */
  readonly token: string;
  readonly mqtt: { host: string; port: number };
  /** Origin artifact URLs in offers start with. */
  readonly artifactOrigin: string;
  /** Registers devices by their keys (`proof`: a device password made with the device key). */
  registerDevices(
    devices: { id: string; publicKeyHex: string; proof: string; hardware: string; tags: string[] }[],
  ): Promise<RegisteredDevices>;
  /** Uploads a signed release as a `.flot` bundle so rollouts can use it. */
  publishRelease(release: { bundlePath: string; version: string }): Promise<void>;
  startRollout(opts: {
    name: string;
    release: string;
    phases: RolloutPhaseInput[];
    maxConcurrent?: number;
    deviceTimeoutSeconds?: number;
    retries?: { failed?: number; rolledBack?: number; timedOut?: number };
    devices?: string[];
  }): Promise<string>;
  rollout(id: string): Promise<RolloutView>;
  deployments(id: string): Promise<DeploymentView[]>;
  /** Devices the server sees connected now. */
  onlineCount(): Promise<number>;
  /** Latest version each device reported (device id → version). */
  deviceVersions(): Promise<Map<string, string | null>>;
  close(): Promise<void>;
}
