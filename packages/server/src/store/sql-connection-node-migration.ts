/**
 * Migration 7, the same text on both engines: which broker node holds a device's MQTT connection
 * (`devices.online_node`, the node's broker id; null when offline or unknown). A node that sees
 * another one die marks offline exactly the devices still recorded on it, and a late offline from
 * a node the device already left changes nothing (docs/cluster.md, "Broker tier").
 */
export const CONNECTION_NODE_MIGRATION = {
  version: 7,
  name: 'the broker node holding each device connection',
  sql: `
ALTER TABLE devices ADD COLUMN online_node TEXT;
CREATE INDEX devices_online_node ON devices(online_node, id);
`,
} as const;
