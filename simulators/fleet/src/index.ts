/**
 * @flotilla/fleet-simulator — N simulated devices running the real agent against a real server,
 * with file-backed A/B slots, the file bootloader, simulated reboots and fault injection.
 */
export { createAgentLauncher, simLimits, type TransportFactory } from './agent-wiring.js';
export { type AttachedFleet, type AttachOptions, attachFleet } from './attach.js';
export { BehaviourReader, parseBehaviour, type SimBehaviour } from './behaviour.js';
export { type DemoArgs, parseDemoArgs } from './demo-args.js';
export { type DemoResult, type DemoSummaryJson, runDemo } from './demo-run.js';
export { type DevicePhase, SimDevice } from './device.js';
export { isSimError, SIM_ERRORS, SimError, type SimErrorCode } from './errors.js';
export {
  assignFaults,
  FAULT_PRESETS,
  type FaultProfile,
  type PowerCutFault,
  parseFaultSpec,
} from './faults.js';
export { Fleet, type FleetDeviceInfo, type FleetOptions } from './fleet.js';
export { type AcknowledgedReport, recordAcknowledged } from './history.js';
export { type FaultProxy, type NetFaults, startFaultProxy } from './net-proxy.js';
export { runPool, sleep } from './pool.js';
export type * from './ports.js';
export { PowerGate } from './power.js';
export { formatBytes } from './progress.js';
export { createRng } from './rng.js';
export {
  httpServerHandle,
  newToken,
  type SimServer,
  type SimServerOptions,
  startSimServer,
} from './server-wiring.js';
export { buildSimFirmware, checkTools, DEMO_STORY, type SimFirmware } from './sim-firmware.js';
export { DeviceSlots, SlotStore } from './slot-store.js';
export * from './story.js';
export { defaultTransport } from './transport-wiring.js';
export {
  HARDWARE,
  IMAGE_SIZES,
  prepareWorld,
  startWorld,
  type World,
  type WorldBase,
  type WorldOptions,
  writeKeys,
} from './world.js';
