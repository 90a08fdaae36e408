import type { DeviceCommand } from '@flotilla/protocol';

/** Where device commands go out: the embedded aedes broker or an external one the server joins. */
export interface DeviceTransport {
  readonly kind: 'embedded' | 'external';
  /** Publishes a command QoS 1 to the device's persistent session (delivered when it reconnects). */
  publishCommand(deviceId: string, command: DeviceCommand): Promise<void>;
  /**
   * Devices are connected to several nodes (aedes over Redis): isConnected knows only this
   * node's, and the store's online flag (kept by the node holding each connection) is the fleet's.
   */
  readonly sharedPresence?: boolean;
  /** Connected now (embedded: from the broker; external: from recent reports). */
  isConnected(deviceId: string): boolean;
  close(): Promise<void>;
}
