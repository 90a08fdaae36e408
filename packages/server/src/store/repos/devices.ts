import type { DeviceStateMessage, InventoryMessage } from '@flotilla/protocol';
import type { Db } from '../db.js';

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
  const args: Record<string, unknown> = {};
  const add = (sql: string, values: Record<string, unknown>) => {
    where.push(sql);
    Object.assign(args, values);
  };
  if (f.q) add('id >= @q AND id < @qEnd', { q: f.q, qEnd: `${f.q}${ID_PREFIX_END}` });
  if (f.status) add('status = @status', { status: f.status });
  if (f.hardware) add('hardware = @hardware', { hardware: f.hardware });
  if (f.group) add('grp = @group', { group: f.group });
  if (f.channel) add('channel = @channel', { channel: f.channel });
  if (f.version) add('version = @version', { version: f.version });
  if (f.online !== undefined) add('online = @online', { online: f.online ? 1 : 0 });
  if (f.tag) add('id IN (SELECT device_id FROM device_tags WHERE tag = @tag)', { tag: f.tag });
  const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const pageWhere = f.after ? `${clause ? `${clause} AND` : 'WHERE'} id > @after` : clause;
  return {
    count: `SELECT COUNT(*) AS n FROM devices ${clause}`,
    args,
    // One row more than asked says whether there is a next page.
    page: `SELECT * FROM devices ${pageWhere} ORDER BY id LIMIT @limit OFFSET @offset`,
    pageArgs: { ...args, ...(f.after ? { after: f.after } : {}), limit: f.limit + 1, offset: f.offset },
  };
}

/** Devices: identity (key, status), placement (tags, group, channel) and the latest reported state. */
export class DevicesRepo {
  private readonly s;

  constructor(private readonly db: Db) {
    this.s = {
      get: db.prepare<[string], Row>('SELECT * FROM devices WHERE id = ?'),
      acceptedKeys: db.prepare<[number], { publicKey: string }>(
        "SELECT public_key AS publicKey FROM devices WHERE status = 'accepted' ORDER BY updated DESC LIMIT ?",
      ),
      authInfo: db.prepare<[string], { publicKey: string; status: DeviceStatus }>(
        'SELECT public_key AS publicKey, status FROM devices WHERE id = ?',
      ),
      insert: db.prepare(
        `INSERT INTO devices (id, public_key, status, hardware, tags, grp, channel, created, updated)
         VALUES (@id, @publicKey, @status, @hardware, @tags, @group, @channel, @now, @now)`,
      ),
      setStatus: db.prepare('UPDATE devices SET status = ?, updated = ? WHERE id = ?'),
      setKey: db.prepare('UPDATE devices SET public_key = ?, status = ?, updated = ? WHERE id = ?'),
      setClaim: db.prepare(
        'UPDATE devices SET public_key = ?, status = ?, hardware = ?, updated = ? WHERE id = ?',
      ),
      countStatus: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM devices WHERE status = ?'),
      setPlacement: db.prepare(
        'UPDATE devices SET tags = @tags, grp = @group, channel = @channel, updated = @now WHERE id = @id',
      ),
      state: db.prepare(
        `UPDATE devices SET version = @version, image_sha256 = @imageSha256, security_version = MAX(security_version, @securityVersion),
           active_slot = @activeSlot, agent_state = @agentState, deployment_id = @deploymentId, last_error = @lastError,
           state_seq = @seq, state_ts = @ts, online = 1, last_seen = @now, updated = @now
         WHERE id = @id AND (state_seq IS NULL OR state_seq <= @seq OR @ts > COALESCE(state_ts, 0))`,
      ),
      inventory: db.prepare(
        `UPDATE devices SET inventory = @inventory, inventory_ts = @ts, hardware = @hardware, online = 1, last_seen = @now,
           updated = @now WHERE id = @id`,
      ),
      seen: db.prepare('UPDATE devices SET online = 1, last_seen = ? WHERE id = ?'),
      online: db.prepare('UPDATE devices SET online = ?, updated = ? WHERE id = ?'),
      staleOffline: db.prepare<[number], { id: string }>(
        'UPDATE devices SET online = 0 WHERE online = 1 AND (last_seen IS NULL OR last_seen < ?) RETURNING id',
      ),
      allOffline: db.prepare('UPDATE devices SET online = 0 WHERE online = 1'),
      setSecret: db.prepare('UPDATE devices SET mqtt_secret_hash = ?, updated = ? WHERE id = ?'),
      credentials: db.prepare<[], { id: string; mqtt_secret_hash: string }>(
        `SELECT id, mqtt_secret_hash FROM devices WHERE status = 'accepted' AND mqtt_secret_hash IS NOT NULL ORDER BY id`,
      ),
      counts: db.prepare<[], { status: string; n: number }>(
        'SELECT status, COUNT(*) AS n FROM devices GROUP BY status',
      ),
      versions: db.prepare<[], { version: string | null; n: number }>(
        `SELECT version, COUNT(*) AS n FROM devices WHERE status = 'accepted' GROUP BY version`,
      ),
      accepted: db.prepare<[], AcceptedRow>(
        `SELECT id, hardware, tags, grp, channel, version, image_sha256, security_version, online, last_seen
         FROM devices WHERE status = 'accepted'`,
      ),
      runningImages: db.prepare<[], { image_sha256: string }>(
        `SELECT DISTINCT image_sha256 FROM devices WHERE image_sha256 IS NOT NULL AND status != 'decommissioned'`,
      ),
    };
  }

  get(id: string): Device | undefined {
    const r = this.s.get.get(id);
    return r ? toDevice(r) : undefined;
  }

  /** Public keys of accepted devices, most recently changed first. */
  acceptedKeys(limit: number): string[] {
    return this.s.acceptedKeys.all(limit).map((r) => r.publicKey);
  }

  /** Only what a login needs (runs on every MQTT connect: no tags to parse, no other columns). */
  authInfo(id: string): { publicKey: string; status: DeviceStatus } | undefined {
    return this.s.authInfo.get(id);
  }

  insert(d: {
    id: string;
    publicKey: string;
    status: DeviceStatus;
    hardware?: string | null;
    tags?: string[];
    group?: string | null;
    channel?: string;
    now: number;
  }): void {
    this.s.insert.run({
      id: d.id,
      publicKey: d.publicKey,
      status: d.status,
      hardware: d.hardware ?? null,
      tags: JSON.stringify(d.tags ?? []),
      group: d.group ?? null,
      channel: d.channel ?? 'prod',
      now: d.now,
    });
  }

  setStatus(id: string, status: DeviceStatus, now: number): void {
    this.s.setStatus.run(status, now, id);
  }

  replaceKey(id: string, publicKey: string, status: DeviceStatus, now: number): void {
    this.s.setKey.run(publicKey, status, now, id);
  }

  /** Another key takes over an unproven claim: nothing the claimant said about itself stays. */
  replaceClaim(
    id: string,
    publicKey: string,
    status: DeviceStatus,
    hardware: string | null,
    now: number,
  ): void {
    this.s.setClaim.run(publicKey, status, hardware, now, id);
  }

  countByStatus(status: DeviceStatus): number {
    return this.s.countStatus.get(status)!.n;
  }

  setPlacement(id: string, p: { tags: string[]; group: string | null; channel: string }, now: number): void {
    this.s.setPlacement.run({ id, tags: JSON.stringify(p.tags), group: p.group, channel: p.channel, now });
  }

  /** Applies a state report unless an older one arrives after a newer one (seq restarts only with a later ts). */
  applyState(id: string, m: DeviceStateMessage, now: number): boolean {
    return (
      this.s.state.run({
        id,
        version: m.version,
        imageSha256: m.imageSha256,
        securityVersion: m.securityVersion,
        activeSlot: m.activeSlot,
        agentState: m.agentState,
        deploymentId: m.deploymentId,
        lastError: m.lastError ? JSON.stringify(m.lastError) : null,
        seq: m.seq,
        ts: Date.parse(m.ts),
        now,
      }).changes > 0
    );
  }

  applyInventory(id: string, m: InventoryMessage, now: number): void {
    this.s.inventory.run({
      id,
      inventory: JSON.stringify(m),
      ts: Date.parse(m.ts),
      hardware: m.hardware,
      now,
    });
  }

  seen(id: string, now: number): void {
    this.s.seen.run(now, id);
  }

  setOnline(id: string, online: boolean, now: number): void {
    this.s.online.run(online ? 1 : 0, now, id);
  }

  /** Marks devices silent since `before` offline; returns their ids. */
  markStaleOffline(before: number): string[] {
    return this.s.staleOffline.all(before).map((r) => r.id);
  }

  /** On start nobody is connected yet. */
  markAllOffline(): void {
    this.s.allOffline.run();
  }

  setMqttSecretHash(id: string, hash: string | null, now: number): void {
    this.s.setSecret.run(hash, now, id);
  }

  mqttCredentials(): { id: string; hash: string }[] {
    return this.s.credentials.all().map((r) => ({ id: r.id, hash: r.mqtt_secret_hash }));
  }

  /**
   * One page of the devices matching a filter, in id order, with the total. Every filter is
   * backed by an index (migration 4) and `after` continues from the last id seen, so a page costs
   * the same at 100,000 devices as at 100; `offset` is kept for callers that count pages.
   */
  list(f: DeviceFilter): { items: Device[]; total: number; next: string | null } {
    const q = listQueries(f);
    const total = (this.db.prepare(q.count).get(q.args) as { n: number }).n;
    const rows = this.db.prepare(q.page).all(q.pageArgs) as Row[];
    const more = rows.length > f.limit;
    const items = rows.slice(0, f.limit).map(toDevice);
    return { items, total, next: more ? items[items.length - 1]!.id : null };
  }

  /** SQLite's plan for `list` with this filter (the search tests check that it walks indexes). */
  explainList(f: DeviceFilter): string[] {
    const q = listQueries(f);
    return [q.count, q.page].flatMap((sql) =>
      (
        this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(sql === q.count ? q.args : q.pageArgs) as {
          detail: string;
        }[]
      ).map((r) => r.detail),
    );
  }

  /**
   * Every accepted device with only what the rollout engine reads (no inventory, key or error to
   * parse): the rollout snapshot and the preview read the whole fleet in one pass.
   */
  allAccepted(): AcceptedDevice[] {
    return this.s.accepted.all().map(toAccepted);
  }

  countsByStatus(): Record<string, number> {
    return Object.fromEntries(this.s.counts.all().map((r) => [r.status, r.n]));
  }

  countsByVersion(): { version: string | null; count: number }[] {
    return this.s.versions.all().map((r) => ({ version: r.version, count: r.n }));
  }

  runningImages(): string[] {
    return this.s.runningImages.all().map((r) => r.image_sha256);
  }
}
