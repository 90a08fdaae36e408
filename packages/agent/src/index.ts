// The agent's public entry: build an agent (`createAgent`) from its config and its I/O
// boundary (`AgentDeps`), with the real implementations of each boundary. Test machinery (memory
// implementations, the simulated device, power cuts, boot emulators) is in `@flotilla/agent/testing`.
export { Agent, type AgentStatus, createAgent } from './agent/agent.js';
export type { AgentConfig, AgentDeps, FaultInjector } from './agent/deps.js';
export { CommandReboot, type RebootAction } from './agent/reboot.js';
export { FileBootloader } from './bootloader/file-bootloader.js';
export { GrubBootloader } from './bootloader/grub.js';
export type { Bootloader, BootloaderKind, BootState, CommitOptions } from './bootloader/types.js';
export { UbootBootloader } from './bootloader/uboot.js';
export { type Clock, systemClock } from './clock.js';
export { type Fetcher, HttpFetcher } from './download/fetcher.js';
export { AgentError, type AgentErrorCode } from './errors.js';
export { FunctionCheck, type HealthCheck } from './health/checks.js';
export type { HookRunner } from './hooks/hooks.js';
export type { UpdateLock } from './hooks/update-lock.js';
export { AGENT_LIMITS, type AgentLimitsOverride, resolveLimits } from './limits.js';
export type { Logger } from './logger.js';
export { FileOutbox, type Outbox } from './report/outbox.js';
export { type SlotDevice, SlotSet } from './slots/slot-device.js';
export type { AgentState } from './state/machine.js';
export type { AgentRecord, Deployment } from './state/record.js';
export { FileSecurityFloor, type SecurityFloorStore } from './state/security-floor.js';
export { FileStateStore, type StateStore } from './state/store.js';
export { MqttTransport, type MqttTransportOptions } from './transport/mqtt-transport.js';
export type { Transport, TransportHandlers } from './transport/types.js';
export { HttpRootSource, type RootSource } from './trust/root-source.js';
export { FileTrustStore, type TrustStore } from './trust/trust-store.js';
