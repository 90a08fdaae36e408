export { AGENT_VERSION, Agent, type AgentStatus, createAgent } from './agent/agent.js';
export type { AgentConfig, AgentDeps, FaultInjector } from './agent/deps.js';
export { CommandReboot, type RebootAction } from './agent/reboot.js';
export { STEPS } from './agent/steps.js';
export { emulateGrubBoot, emulateUbootBoot } from './bootloader/boot-emulator.js';
export { FileBootloader } from './bootloader/file-bootloader.js';
export { GRUB_VARS, GrubBootloader, GrubEnv } from './bootloader/grub.js';
export type { Bootloader, BootloaderKind, BootState, CommitOptions } from './bootloader/types.js';
export { UBOOT_VARS, UbootBootloader, UbootEnv } from './bootloader/uboot.js';
export { backoffMs, type Clock, offsetClock, systemClock } from './clock.js';
export { type DownloadSink, download } from './download/downloader.js';
export { type Fetcher, HttpFetcher, MemoryFetcher } from './download/fetcher.js';
export {
  AGENT_ERRORS,
  AgentError,
  type AgentErrorCode,
  AgentKilled,
  isKilled,
  toErrorReport,
} from './errors.js';
export * from './health/checks.js';
export * from './hooks/hooks.js';
export * from './hooks/update-lock.js';
export { ChunkWriter } from './install/chunk-writer.js';
export {
  AGENT_LIMITS,
  type AgentLimits,
  type AgentLimitsOverride,
  resolveLimits,
  STATE_REPORT,
} from './limits.js';
export { createLogger, type Logger, silentLogger } from './logger.js';
export { FileOutbox, MemoryOutbox, type Outbox } from './report/outbox.js';
export { Reporter } from './report/reporter.js';
export { SimDevice, type SimDeviceOptions } from './sim/device.js';
export { PowerCut } from './sim/faults.js';
export { hashSlot } from './slots/hash-slot.js';
export { FileSlotDevice, MemorySlotDevice, type SlotDevice, SlotSet } from './slots/slot-device.js';
export { AGENT_STATES, type AgentState, nextState, type StepEvent, TRANSITIONS } from './state/machine.js';
export type { AgentRecord, Deployment } from './state/record.js';
export {
  FileSecurityFloor,
  MemorySecurityFloor,
  type SecurityFloorStore,
} from './state/security-floor.js';
export { FileStateStore, MemoryStateStore, type StateStore } from './state/store.js';
export { MemoryHub, MemoryTransport } from './transport/memory-transport.js';
export { type MqttAuth, MqttTransport, type MqttTransportOptions } from './transport/mqtt-transport.js';
export type { Transport, TransportHandlers } from './transport/types.js';
export { FileTrustStore, MemoryTrustStore, type TrustStore } from './trust/trust-store.js';
