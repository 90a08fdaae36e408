import type { Slot } from '@flotilla/protocol';
import type { Bootloader } from '../bootloader/types.js';
import type { Clock } from '../clock.js';
import type { Fetcher } from '../download/fetcher.js';
import type { HealthCheck } from '../health/checks.js';
import type { HookRunner } from '../hooks/hooks.js';
import type { UpdateLock } from '../hooks/update-lock.js';
import type { AgentLimitsOverride } from '../limits.js';
import type { Logger } from '../logger.js';
import type { Outbox } from '../report/outbox.js';
import type { SlotSet } from '../slots/slot-device.js';
import type { AgentState, StepEvent } from '../state/machine.js';
import type { SecurityFloorStore } from '../state/security-floor.js';
import type { StateStore } from '../state/store.js';
import type { Transport } from '../transport/types.js';
import type { RootSource } from '../trust/root-source.js';
import type { TrustStore } from '../trust/trust-store.js';
import type { RebootAction } from './reboot.js';

/** What the agent is (identity, policy). Paths and wiring live in the config file (config.ts). */
export interface AgentConfig {
  deviceId: string;
  hardware: string;
  agentVersion?: string;
  /** Data partition directory: signed releases, offers, the delta spool. */
  dataDir: string;
  /** Signed release of the factory image, adopted on first start (else the version is unknown). */
  factoryReleaseFile?: string;
  /** When an offered delta does not apply to the active slot, take the full image (default true). */
  deltaFallbackToFull?: boolean;
  /** Check the active slot against its manifest at start (default true) and every limits.drift.intervalMs. */
  driftCheck?: boolean;
  tags?: string[];
  /**
   * Periodic state report while connected, so the server (external broker: no connect/disconnect
   * seen) keeps the device online; default 120 s, 5 s to 24 h, ±10 % jitter. Config file:
   * `server.stateIntervalMs`.
   */
  stateIntervalMs?: number;
  limits?: AgentLimitsOverride;
}

/** Called at named points (after each state persist, and by wrapped I/O) — throws AgentKilled to crash. */
export type FaultInjector = (point: string) => void;

/** Every I/O boundary of the agent: real implementations on a device, memory/file ones in the simulator. */
export interface AgentDeps {
  store: StateStore;
  bootloader: Bootloader;
  slots: SlotSet;
  transport: Transport;
  fetcher: Fetcher;
  clock: Clock;
  reboot: RebootAction;
  trust: TrustStore;
  /**
   * The server's root metadata (TUF root update on connect and before each offer). Without it
   * the agent uses the `rootUrl` an offer names; with neither, only local roots rotate.
   */
  rootSource?: RootSource;
  outbox: Outbox;
  /** The anti-rollback floor's own store; default: `<dataDir>/security-floor.json`. */
  securityFloor?: SecurityFloorStore;
  health?: HealthCheck[];
  hooks?: HookRunner;
  updateLock?: UpdateLock;
  logger?: Logger;
  faults?: FaultInjector;
  /** Observes every transition (tests assert the exact chain; the simulator draws timelines). */
  onTransition?: (t: { from: AgentState; event: StepEvent; to: AgentState; slot: Slot }) => void;
  random?: () => number;
}
