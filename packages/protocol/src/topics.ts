import { FlotillaError } from './errors.js';
import { type ConnectionStatusMessage, SCHEMA_VERSION } from './schemas.js';
import type { DeviceChannel } from './validate.js';

/** MQTT topic grammar (docs/protocol.md#mqtt-topics-and-acl): flotilla/v1/devices/{id}/{state|events|inventory|status|commands}. */
export const TOPIC_PREFIX = 'flotilla/v1';
export const DEVICE_CHANNELS: readonly DeviceChannel[] = [
  'state',
  'events',
  'inventory',
  'status',
  'commands',
];
const DEVICE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_RE.test(id) && id !== '.' && id !== '..';
}

export function deviceTopic(deviceId: string, channel: DeviceChannel): string {
  if (!isValidDeviceId(deviceId))
    throw new FlotillaError('FLOTILLA_ERR_DEVICE_ID_INVALID', JSON.stringify(deviceId));
  return `${TOPIC_PREFIX}/devices/${deviceId}/${channel}`;
}

export function parseDeviceTopic(topic: string): { deviceId: string; channel: DeviceChannel } | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== TOPIC_PREFIX || parts[2] !== 'devices') return null;
  const [, , , deviceId, channel] = parts as [string, string, string, string, string];
  if (!isValidDeviceId(deviceId) || !(DEVICE_CHANNELS as readonly string[]).includes(channel)) return null;
  return { deviceId, channel: channel as DeviceChannel };
}

/** Who is on the other end of an MQTT connection. */
export type Identity = { kind: 'device'; deviceId: string } | { kind: 'server' };

/**
 * The ACL table: the only place that says who may publish or subscribe where. A device touches
 * only its own four topics (publishes reports, subscribes to its commands); the server publishes
 * commands and reads every device's reports. Nothing else — no wildcards for devices, no `$SYS`.
 * `status` is the device's online message and last will (`connectionStatus`).
 */
export const ACL_TABLE = {
  device: {
    publish: ['state', 'events', 'inventory', 'status'] as DeviceChannel[],
    subscribe: ['commands'] as DeviceChannel[],
  },
  server: {
    publish: ['commands'] as DeviceChannel[],
    subscribe: ['state', 'events', 'inventory', 'status'] as DeviceChannel[],
  },
} as const;

/**
 * The device's online message (`online: true`, published QoS 1 once connected) or its MQTT last
 * will (`online: false`, published by the broker when the connection dies without a DISCONNECT),
 * for the connection `session`. Never retained: the server's persistent session gets them in order.
 */
export function connectionStatus(
  deviceId: string,
  session: string,
  online: boolean,
): { topic: string; payload: string; qos: 1; retain: false } {
  const message: ConnectionStatusMessage = { schemaVersion: SCHEMA_VERSION, type: 'status', online, session };
  return { topic: deviceTopic(deviceId, 'status'), payload: JSON.stringify(message), qos: 1, retain: false };
}

export function mayPublish(identity: Identity, topic: string): boolean {
  const t = parseDeviceTopic(topic);
  if (!t) return false;
  if (identity.kind === 'device')
    return t.deviceId === identity.deviceId && ACL_TABLE.device.publish.includes(t.channel);
  return ACL_TABLE.server.publish.includes(t.channel);
}

export function maySubscribe(identity: Identity, filter: string): boolean {
  if (filter.startsWith('$')) return false;
  if (identity.kind === 'device') {
    const t = parseDeviceTopic(filter); // exact topic only: no + or # for devices
    return t !== null && t.deviceId === identity.deviceId && ACL_TABLE.device.subscribe.includes(t.channel);
  }
  const parts = filter.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== TOPIC_PREFIX || parts[2] !== 'devices')
    return false;
  const id = parts[3] as string;
  if (id !== '+' && !isValidDeviceId(id)) return false;
  return (ACL_TABLE.server.subscribe as readonly string[]).includes(parts[4] as string);
}

/**
 * The same table rendered as a Mosquitto ACL file: devices log in with their device id as the
 * user name (`%u`), the server as `serverUser`.
 */
export function renderMosquittoAcl(serverUser: string): string {
  const lines = [`# generated from @flotilla/protocol ACL_TABLE — do not edit`, `user ${serverUser}`];
  for (const c of ACL_TABLE.server.publish) lines.push(`topic write ${TOPIC_PREFIX}/devices/+/${c}`);
  for (const c of ACL_TABLE.server.subscribe) lines.push(`topic read ${TOPIC_PREFIX}/devices/+/${c}`);
  lines.push('', '# every other user is a device and may touch only its own topics');
  for (const c of ACL_TABLE.device.publish) lines.push(`pattern write ${TOPIC_PREFIX}/devices/%u/${c}`);
  for (const c of ACL_TABLE.device.subscribe) lines.push(`pattern read ${TOPIC_PREFIX}/devices/%u/${c}`);
  return `${lines.join('\n')}\n`;
}
