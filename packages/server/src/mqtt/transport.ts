import type { DeviceCommand } from '@flotilla/protocol';

/** Where device commands go out: the embedded aedes broker or an external one the server joins. */
export interface DeviceTransport {
  readonly kind: 'embedded' | 'external';
  /** Publishes a command QoS 1 to the device's persistent session (delivered when it reconnects). */
  publishCommand(deviceId: string, command: DeviceCommand): Promise<void>;
  /** Connected now (embedded: from the broker; external: from recent reports). */
  isConnected(deviceId: string): boolean;
  close(): Promise<void>;
}
