import type { DeviceStateMessage, InventoryMessage } from '@flotilla/protocol';
import type { Sql, SqlValue } from '../sql.js';
import { type ColumnType, inChunks, placeholdersFor, sortedById, valuesOf } from '../sql-rows.js';

export type DeviceStatus = 'pending' | 'accepted' | 'rejected' | 'decommissioned';

export interface Device {
  id: string;
  publicKey: string;
  status: DeviceStatus;
  hardware: string | null;
  tags: string[];
  group: string | null;
  channel: string;
  version: string | null;
  imageSha256: string | null;
  securityVersion: number;
  activeSlot: string | null;
  agentState: string | null;
  deploymentId: string | null;
  lastError: { code: string; message: string } | null;
  stateSeq: number | null;
  stateTs: number | null;
  inventory: InventoryMessage | null;
  online: boolean;
  lastSeen: number | null;
  created: number;
  updated: number;
}

interface Row {
  id: string;
  public_key: string;
  status: DeviceStatus;
  hardware: string | null;
  tags: string;
  grp: string | null;
  channel: string;
  version: string | null;
  image_sha256: string | null;
  security_version: number;
  active_slot: string | null;
  agent_state: string | null;
  deployment_id: string | null;
  last_error: string | null;
  state_seq: number | null;
  state_ts: number | null;
  inventory: string | null;
  online: number;
  last_seen: number | null;
  mqtt_secret_hash: string | null;
  created: number;
  updated: number;
}

/** The columns the rollout engine reads (also the start of every full device). */
function toAccepted(r: AcceptedRow): AcceptedDevice {
  return {
    id: r.id,
    hardware: r.hardware,
    tags: JSON.parse(r.tags) as string[],
    group: r.grp,
    channel: r.channel,
    version: r.version,
    imageSha256: r.image_sha256,
    securityVersion: r.security_version,
    online: r.online === 1,
    lastSeen: r.last_seen,
  };
}

function toDevice(r: Row): Device {
  return {
    ...toAccepted(r),
    publicKey: r.public_key,
    status: r.status,
    activeSlot: r.active_slot,
    agentState: r.agent_state,
    deploymentId: r.deployment_id,
    lastError: r.last_error ? (JSON.parse(r.last_error) as Device['lastError']) : null,
    stateSeq: r.state_seq,
    stateTs: r.state_ts,
    inventory: r.inventory ? (JSON.parse(r.inventory) as InventoryMessage) : null,
    created: r.created,
    updated: r.updated,
  };
}

/** Sorts after every character a device id may hold ([A-Za-z0-9._-]): the end of an id-prefix range. */
const ID_PREFIX_END = '~';

type AcceptedRow = Pick<
  Row,
  | 'id'
  | 'hardware'
  | 'tags'
  | 'grp'
  | 'channel'
  | 'version'
  | 'image_sha256'
  | 'security_version'
  | 'online'
  | 'last_seen'
>;

/** What the rollout engine needs of a device (see `allAccepted`). */
export type AcceptedDevice = Pick<
  Device,
  | 'id'
  | 'hardware'
  | 'tags'
  | 'group'
  | 'channel'
  | 'version'
  | 'imageSha256'
  | 'securityVersion'
  | 'online'
  | 'lastSeen'
>;

export interface DeviceFilter {
  /** Device ids that start with this. */
  q?: string;
  /** Only ids after this one (the last id of the previous page). */
  after?: string;
  status?: DeviceStatus;
  hardware?: string;
  tag?: string;
  group?: string;
  channel?: string;
  version?: string;
  online?: boolean;
  limit: number;
  offset: number;
}

/** The count and page statements of a device search, with their parameters. */
function listQueries(f: DeviceFilter) {
  const where: string[] = [];
  const args: SqlValue[] = [];
  const add = (sql: string, ...values: SqlValue[]) => {
    where.push(sql);
    args.push(...values);
  };
  if (f.q) add('id >= ? AND id < ?', f.q, `${f.q}${ID_PREFIX_END}`);
  if (f.status) add('status = ?', f.status);
  if (f.hardware) add('hardware = ?', f.hardware);
  if (f.group) add('grp = ?', f.group);
  if (f.channel) add('channel = ?', f.channel);
  if (f.version) add('version = ?', f.version);
  if (f.online !== undefined) add('online = ?', f.online ? 1 : 0);
  if (f.tag) add('id IN (SELECT device_id FROM device_tags WHERE tag = ?)', f.tag);
  const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const pageWhere = f.after ? `${clause ? `${clause} AND` : 'WHERE'} id > ?` : clause;
  return {
    count: `SELECT COUNT(*) AS n FROM devices ${clause}`,
    args,
    // One row more than asked says whether there is a next page.
    page: `SELECT * FROM devices ${pageWhere} ORDER BY id LIMIT ? OFFSET ?`,
    pageArgs: [...args, ...(f.after ? [f.after] : []), f.limit + 1, f.offset],
  };
}

const STATE = `UPDATE devices SET version = ?, image_sha256 = ?,
    security_version = CASE WHEN security_version > ? THEN security_version ELSE ? END,
    active_slot = ?, agent_state = ?, deployment_id = ?, last_error = ?,
    state_seq = ?, state_ts = ?, online = 1, last_seen = ?, updated = ?
  WHERE id = ? AND (state_seq IS NULL OR state_seq <= ? OR ? > COALESCE(state_ts, 0))`;

/** STATE for many devices: v is (id, version, image, security version, slot, agent state, deployment, error, seq, ts). */
const STATES = (values: string) => `UPDATE devices SET version = v.column2, image_sha256 = v.column3,
    security_version = CASE WHEN devices.security_version > v.column4 THEN devices.security_version ELSE v.column4 END,
    active_slot = v.column5, agent_state = v.column6, deployment_id = v.column7, last_error = v.column8,
    state_seq = v.column9, state_ts = v.column10, online = 1, last_seen = ?, updated = ?
  FROM (${values}) AS v
  WHERE devices.id = v.column1
    AND (devices.state_seq IS NULL OR devices.state_seq <= v.column9 OR v.column10 > COALESCE(devices.state_ts, 0))`;
const STATE_TYPES: ColumnType[] = [
  'TEXT',
  'TEXT',
  'TEXT',
  'BIGINT',
  'TEXT',
  'TEXT',
  'TEXT',
  'TEXT',
  'BIGINT',
  'BIGINT',
];

/** A state report's values in STATES' column order. */
export function stateRow(id: string, m: DeviceStateMessage): SqlValue[] {
  return [
    id,
    m.version,
    m.imageSha256,
    m.securityVersion,
    m.activeSlot,
    m.agentState,
    m.deploymentId,
    m.lastError ? JSON.stringify(m.lastError) : null,
    m.seq,
    Date.parse(m.ts),
  ];
}

/** An inventory report's values: id, inventory, its time, hardware. */
export function inventoryRow(id: string, m: InventoryMessage): SqlValue[] {
  return [id, JSON.stringify(m), Date.parse(m.ts), m.hardware];
}

/** Devices: identity (key, status), placement (tags, group, channel) and the latest reported state. */
export class DevicesRepo {
  constructor(private readonly sql: Sql) {}

  async get(id: string): Promise<Device | undefined> {
    const r = await this.sql.get<Row>('SELECT * FROM devices WHERE id = ?', [id]);
    return r ? toDevice(r) : undefined;
  }

  /** Public keys of accepted devices, most recently changed first. */
  async acceptedKeys(limit: number): Promise<string[]> {
    const rows = await this.sql.all<{ publicKey: string }>(
      'SELECT public_key AS "publicKey" FROM devices WHERE status = \'accepted\' ORDER BY updated DESC LIMIT ?',
      [limit],
    );
    return rows.map((r) => r.publicKey);
  }

  /** Only what a login needs (runs on every MQTT connect: no tags to parse, no other columns). */
  authInfo(id: string): Promise<{ publicKey: string; status: DeviceStatus } | undefined> {
    return this.sql.get('SELECT public_key AS "publicKey", status FROM devices WHERE id = ?', [id]);
  }

  async insert(d: {
    id: string;
    publicKey: string;
    status: DeviceStatus;
    hardware?: string | null;
    tags?: string[];
    group?: string | null;
    channel?: string;
    now: number;
  }): Promise<void> {
    await this.sql.run(
      `INSERT INTO devices (id, public_key, status, hardware, tags, grp, channel, created, updated)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        d.id,
        d.publicKey,
        d.status,
        d.hardware ?? null,
        JSON.stringify(d.tags ?? []),
        d.group ?? null,
        d.channel ?? 'prod',
        d.now,
        d.now,
      ],
    );
  }

  async setStatus(id: string, status: DeviceStatus, now: number): Promise<void> {
    await this.sql.run('UPDATE devices SET status = ?, updated = ? WHERE id = ?', [status, now, id]);
  }

  async replaceKey(id: string, publicKey: string, status: DeviceStatus, now: number): Promise<void> {
    await this.sql.run('UPDATE devices SET public_key = ?, status = ?, updated = ? WHERE id = ?', [
      publicKey,
      status,
      now,
      id,
    ]);
  }

  /** Another key takes over an unproven claim: nothing the claimant said about itself stays. */
  async replaceClaim(
    id: string,
    publicKey: string,
    status: DeviceStatus,
    hardware: string | null,
    now: number,
  ): Promise<void> {
    await this.sql.run(
      'UPDATE devices SET public_key = ?, status = ?, hardware = ?, updated = ? WHERE id = ?',
      [publicKey, status, hardware, now, id],
    );
  }

  async countByStatus(status: DeviceStatus): Promise<number> {
    const r = await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM devices WHERE status = ?', [
      status,
    ]);
    return r?.n ?? 0;
  }

  async setPlacement(
    id: string,
    p: { tags: string[]; group: string | null; channel: string },
    now: number,
  ): Promise<void> {
    await this.sql.run('UPDATE devices SET tags = ?, grp = ?, channel = ?, updated = ? WHERE id = ?', [
      JSON.stringify(p.tags),
      p.group,
      p.channel,
      now,
      id,
    ]);
  }

  /** Applies a state report unless an older one arrives after a newer one (seq restarts only with a later ts). */
  async applyState(id: string, m: DeviceStateMessage, now: number): Promise<boolean> {
    // STATE's order: the row's version..security version, security version..ts, then the WHERE's.
    const row = stateRow(id, m);
    const r = await this.sql.run(STATE, [...row.slice(1, 4), ...row.slice(3), now, now, id, ...row.slice(8)]);
    return r.changes > 0;
  }

  /**
   * applyState for many devices, one statement per chunk: at most one report per device (which
   * of two would win is the order's business: apply them in turn).
   */
  async applyStates(list: readonly { id: string; message: DeviceStateMessage }[], now: number) {
    for (const chunk of inChunks(sortedById(list))) {
      const v = valuesOf(
        STATE_TYPES,
        chunk.map((s) => stateRow(s.id, s.message)),
      );
      await this.sql.run(STATES(v.sql), [now, now, ...v.params]);
    }
  }

  async applyInventory(id: string, m: InventoryMessage, now: number): Promise<void> {
    await this.sql.run(
      `UPDATE devices SET inventory = ?, inventory_ts = ?, hardware = ?, online = 1, last_seen = ?, updated = ?
       WHERE id = ?`,
      [...inventoryRow(id, m).slice(1), now, now, id],
    );
  }

  /** applyInventory for many devices (at most one report per device), one statement per chunk. */
  async applyInventories(list: readonly { id: string; message: InventoryMessage }[], now: number) {
    for (const chunk of inChunks(sortedById(list))) {
      const v = valuesOf(
        ['TEXT', 'TEXT', 'BIGINT', 'TEXT'],
        chunk.map((s) => inventoryRow(s.id, s.message)),
      );
      await this.sql.run(
        `UPDATE devices SET inventory = v.column2, inventory_ts = v.column3, hardware = v.column4,
           online = 1, last_seen = ?, updated = ?
         FROM (${v.sql}) AS v WHERE devices.id = v.column1`,
        [now, now, ...v.params],
      );
    }
  }

  async seen(id: string, now: number): Promise<void> {
    await this.sql.run('UPDATE devices SET online = 1, last_seen = ? WHERE id = ?', [now, id]);
  }

  /**
   * seen for many devices, one statement per chunk. A row that already says so (a state report of
   * the same batch set it) is left alone: rewriting it would only add a row version.
   */
  async seenMany(ids: readonly string[], now: number): Promise<void> {
    for (const chunk of inChunks([...new Set(ids)].sort()))
      await this.sql.run(
        `UPDATE devices SET online = 1, last_seen = ?
         WHERE id IN (${placeholdersFor(chunk)}) AND (online <> 1 OR last_seen IS NULL OR last_seen <> ?)`,
        [now, ...chunk, now],
      );
  }

  /**
   * Records a connection or its end. `node` is the broker node that holds (held) it: online
   * records it there; offline then changes the device only while it is still online there, so a
   * node the device already left (or one that died) cannot mark its new connection offline.
   * Returns whether the device changed (an offline that changed nothing is no news).
   */
  async setOnline(id: string, online: boolean, now: number, node?: string): Promise<boolean> {
    if (online)
      await this.sql.run('UPDATE devices SET online = 1, online_node = ?, updated = ? WHERE id = ?', [
        node ?? null,
        now,
        id,
      ]);
    else if (node === undefined)
      await this.sql.run('UPDATE devices SET online = 0, online_node = NULL, updated = ? WHERE id = ?', [
        now,
        id,
      ]);
    else
      return (
        (
          await this.sql.run(
            'UPDATE devices SET online = 0, online_node = NULL, updated = ? WHERE id = ? AND online = 1 AND online_node = ?',
            [now, id, node],
          )
        ).changes > 0
      );
    return true;
  }

  /**
   * setOnline for many devices (at most one change per device), a statement per kind and chunk.
   * Returns, in list order, whether each changed the device.
   */
  async setOnlineMany(
    list: readonly { id: string; online: boolean; node?: string | undefined }[],
    now: number,
  ): Promise<boolean[]> {
    const on = list.filter((c) => c.online);
    const offAnywhere = list.filter((c) => !c.online && c.node === undefined).map((c) => c.id);
    const offThere = list.filter((c) => !c.online && c.node !== undefined);
    for (const chunk of inChunks(sortedById(on))) {
      const v = valuesOf(
        ['TEXT', 'TEXT'],
        chunk.map((c) => [c.id, c.node ?? null]),
      );
      await this.sql.run(
        `UPDATE devices SET online = 1, online_node = v.column2, updated = ?
         FROM (${v.sql}) AS v WHERE devices.id = v.column1`,
        [now, ...v.params],
      );
    }
    for (const chunk of inChunks(offAnywhere.sort()))
      await this.sql.run(
        `UPDATE devices SET online = 0, online_node = NULL, updated = ? WHERE id IN (${placeholdersFor(chunk)})`,
        [now, ...chunk],
      );
    const changed = new Set<string>();
    for (const chunk of inChunks(sortedById(offThere))) {
      const v = valuesOf(
        ['TEXT', 'TEXT'],
        chunk.map((c) => [c.id, c.node ?? null]),
      );
      const rows = await this.sql.all<{ id: string }>(
        `UPDATE devices SET online = 0, online_node = NULL, updated = ?
         FROM (${v.sql}) AS v WHERE devices.id = v.column1 AND devices.online = 1 AND devices.online_node = v.column2
         RETURNING devices.id`,
        [now, ...v.params],
      );
      for (const r of rows) changed.add(r.id);
    }
    return list.map((c) => c.online || c.node === undefined || changed.has(c.id));
  }

  /** The devices recorded online on broker node `node` (see setOnline), in id order. */
  async onlineOn(node: string): Promise<string[]> {
    const rows = await this.sql.all<{ id: string }>(
      'SELECT id FROM devices WHERE online_node = ? AND online = 1 ORDER BY id',
      [node],
    );
    return rows.map((r) => r.id);
  }

  /** Marks devices silent since `before` offline; returns their ids. */
  async markStaleOffline(before: number): Promise<string[]> {
    const rows = await this.sql.all<{ id: string }>(
      'UPDATE devices SET online = 0, online_node = NULL WHERE online = 1 AND (last_seen IS NULL OR last_seen < ?) RETURNING id',
      [before],
    );
    return rows.map((r) => r.id);
  }

  /** On start nobody is connected yet. */
  async markAllOffline(): Promise<void> {
    await this.sql.run('UPDATE devices SET online = 0, online_node = NULL WHERE online = 1');
  }

  async setMqttSecretHash(id: string, hash: string | null, now: number): Promise<void> {
    await this.sql.run('UPDATE devices SET mqtt_secret_hash = ?, updated = ? WHERE id = ?', [hash, now, id]);
  }

  async mqttCredentials(): Promise<{ id: string; hash: string }[]> {
    const rows = await this.sql.all<{ id: string; mqtt_secret_hash: string }>(
      `SELECT id, mqtt_secret_hash FROM devices WHERE status = 'accepted' AND mqtt_secret_hash IS NOT NULL ORDER BY id`,
    );
    return rows.map((r) => ({ id: r.id, hash: r.mqtt_secret_hash }));
  }

  /**
   * One page of the devices matching a filter, in id order, with the total. Every filter is
   * backed by an index (migration 4) and `after` continues from the last id seen, so a page costs
   * the same at 100,000 devices as at 100; `offset` is kept for callers that count pages.
   */
  async list(f: DeviceFilter): Promise<{ items: Device[]; total: number; next: string | null }> {
    const q = listQueries(f);
    const total = (await this.sql.get<{ n: number }>(q.count, q.args))?.n ?? 0;
    const rows = await this.sql.all<Row>(q.page, q.pageArgs);
    const more = rows.length > f.limit;
    const items = rows.slice(0, f.limit).map(toDevice);
    return { items, total, next: more ? items[items.length - 1]!.id : null };
  }

  /**
   * The engine's plan for `list` with this filter (the search tests check that it walks
   * indexes). SQLite's `EXPLAIN QUERY PLAN` only: plans are engine-specific.
   */
  async explainList(f: DeviceFilter): Promise<string[]> {
    if (this.sql.dialect !== 'sqlite') return [];
    const q = listQueries(f);
    const out: string[] = [];
    for (const [sql, args] of [
      [q.count, q.args],
      [q.page, q.pageArgs],
    ] as const) {
      const rows = await this.sql.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, args);
      out.push(...rows.map((r) => r.detail));
    }
    return out;
  }

  /**
   * Every accepted device with only what the rollout engine reads (no inventory, key or error to
   * parse): the rollout snapshot and the preview read the whole fleet in one pass.
   */
  async allAccepted(): Promise<AcceptedDevice[]> {
    const rows = await this.sql.all<AcceptedRow>(
      `SELECT id, hardware, tags, grp, channel, version, image_sha256, security_version, online, last_seen
       FROM devices WHERE status = 'accepted'`,
    );
    return rows.map(toAccepted);
  }

  async countsByStatus(): Promise<Record<string, number>> {
    const rows = await this.sql.all<{ status: string; n: number }>(
      'SELECT status, COUNT(*) AS n FROM devices GROUP BY status',
    );
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async countsByVersion(): Promise<{ version: string | null; count: number }[]> {
    const rows = await this.sql.all<{ version: string | null; n: number }>(
      `SELECT version, COUNT(*) AS n FROM devices WHERE status = 'accepted' GROUP BY version`,
    );
    return rows.map((r) => ({ version: r.version, count: r.n }));
  }

  async runningImages(): Promise<string[]> {
    const rows = await this.sql.all<{ image_sha256: string }>(
      `SELECT DISTINCT image_sha256 FROM devices WHERE image_sha256 IS NOT NULL AND status != 'decommissioned'`,
    );
    return rows.map((r) => r.image_sha256);
  }
}
