import type { DeviceEventMessage, DeviceStateMessage, InventoryMessage } from '@flotilla/protocol';

/** One device report as the broker hands it to the ingestor. */
export type Report =
  | { deviceId: string; channel: 'state'; message: DeviceStateMessage }
  | { deviceId: string; channel: 'events'; message: DeviceEventMessage }
  | { deviceId: string; channel: 'inventory'; message: InventoryMessage }
  /** `node`: the broker node the connection is (was) on; an offline then counts only there (DevicesRepo.setOnline). */
  | { deviceId: string; channel: 'connection'; online: boolean; node?: string };
