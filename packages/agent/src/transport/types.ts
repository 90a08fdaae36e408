export type ReportChannel = 'state' | 'events' | 'inventory';

export interface TransportHandlers {
  /** Raw payload of a message on the device's commands topic (decoded and validated by the agent). */
  onCommand(payload: Uint8Array): void;
  onConnect(): void;
  onDisconnect(): void;
}

/**
 * The link to the server (MQTT in production). Publishing while offline rejects; the agent keeps
 * what must not be lost in its on-disk outbox and sends it on the next connect.
 */
export interface Transport {
  start(handlers: TransportHandlers): void;
  connected(): boolean;
  /** Resolves when the broker acknowledged it (QoS 1) or it was written (QoS 0). */
  publish(channel: ReportChannel, payload: string, qos: 0 | 1): Promise<void>;
  stop(): Promise<void>;
}
