// `@flotilla/agent/testing`: machinery for tests, benches and simulators, never for a device.
// Memory implementations of the agent's I/O boundary, a simulated device on files, power cuts
// (fault injection) and emulators of what U-Boot and GRUB do at boot.
export { emulateGrubBoot, emulateUbootBoot } from './bootloader/boot-emulator.js';
export { MemoryFetcher } from './download/fetcher.js';
export { AgentKilled } from './errors.js';
export { MemoryUpdateLock } from './hooks/update-lock.js';
export { MemoryOutbox } from './report/outbox.js';
export { SimDevice, type SimDeviceOptions } from './sim/device.js';
export { PowerCut } from './sim/faults.js';
export { MemorySlotDevice } from './slots/slot-device.js';
export { MemorySecurityFloor } from './state/security-floor.js';
export { MemoryStateStore } from './state/store.js';
export { MemoryHub, MemoryTransport } from './transport/memory-transport.js';
