import { CLUSTER_MIGRATION } from './sql-cluster-migration.js';
import { CLUSTER_SECRETS_MIGRATION } from './sql-cluster-secrets.js';
import { CONNECTION_NODE_MIGRATION } from './sql-connection-node-migration.js';

/**
 * Numbered migrations, applied in order inside one transaction each; `PRAGMA user_version` records
 * the last one applied. Never edit a migration that has shipped: add the next number.
 * Times are integer milliseconds since the epoch; JSON columns hold canonical JSON text.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE devices (
  id              TEXT PRIMARY KEY,
  public_key      TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('pending','accepted','rejected','decommissioned')),
  hardware        TEXT,
  tags            TEXT NOT NULL DEFAULT '[]',
  grp             TEXT,
  channel         TEXT NOT NULL DEFAULT 'prod',
  version         TEXT,
  image_sha256    TEXT,
  security_version INTEGER NOT NULL DEFAULT 0,
  active_slot     TEXT,
  agent_state     TEXT,
  deployment_id   TEXT,
  last_error      TEXT,
  state_seq       INTEGER,
  state_ts        INTEGER,
  inventory       TEXT,
  inventory_ts    INTEGER,
  online          INTEGER NOT NULL DEFAULT 0,
  last_seen       INTEGER,
  mqtt_secret_hash TEXT,
  created         INTEGER NOT NULL,
  updated         INTEGER NOT NULL
);
CREATE INDEX devices_status ON devices(status);
CREATE INDEX devices_image ON devices(image_sha256);

CREATE TABLE device_events (
  id            INTEGER PRIMARY KEY,
  device_id     TEXT NOT NULL,
  event_id      TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  ts            INTEGER NOT NULL,
  kind          TEXT NOT NULL,
  deployment_id TEXT,
  body          TEXT NOT NULL,
  received      INTEGER NOT NULL,
  UNIQUE (device_id, event_id)
);
CREATE INDEX device_events_device ON device_events(device_id, id);
CREATE INDEX device_events_deployment ON device_events(deployment_id);

CREATE TABLE provisioning_tokens (
  id        TEXT PRIMARY KEY,
  hash      TEXT NOT NULL UNIQUE,
  label     TEXT NOT NULL,
  auto_accept INTEGER NOT NULL DEFAULT 1,
  expires   INTEGER NOT NULL,
  used_by   TEXT,
  used_at   INTEGER,
  created   INTEGER NOT NULL
);

CREATE TABLE artifacts (
  sha256   TEXT PRIMARY KEY,
  size     INTEGER NOT NULL,
  kind     TEXT NOT NULL CHECK (kind IN ('image','delta','sbom','bundle')),
  created  INTEGER NOT NULL
);

CREATE TABLE releases (
  id               TEXT PRIMARY KEY,
  name             TEXT NOT NULL,
  version          TEXT NOT NULL,
  kind             TEXT NOT NULL,
  security_version INTEGER NOT NULL,
  compatible       TEXT NOT NULL,
  image_sha256     TEXT NOT NULL REFERENCES artifacts(sha256),
  image_size       INTEGER NOT NULL,
  sbom_sha256      TEXT,
  manifest         TEXT NOT NULL,
  created          INTEGER NOT NULL,
  UNIQUE (version)
);
CREATE INDEX releases_image ON releases(image_sha256);

CREATE TABLE channel_releases (
  channel    TEXT NOT NULL CHECK (channel IN ('dev','staging','prod')),
  release_id TEXT NOT NULL REFERENCES releases(id),
  promoted   INTEGER NOT NULL,
  PRIMARY KEY (channel, release_id)
);

CREATE TABLE deltas (
  from_sha256  TEXT NOT NULL,
  to_sha256    TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('queued','building','ready','failed')),
  delta_sha256 TEXT REFERENCES artifacts(sha256),
  delta_size   INTEGER,
  codec        TEXT,
  descriptor   TEXT,
  error        TEXT,
  created      INTEGER NOT NULL,
  updated      INTEGER NOT NULL,
  PRIMARY KEY (from_sha256, to_sha256)
);

CREATE TABLE rollouts (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  release_id  TEXT NOT NULL,
  policy      TEXT NOT NULL,
  status      TEXT NOT NULL,
  runtime     TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  created     INTEGER NOT NULL,
  updated     INTEGER NOT NULL
);

CREATE TABLE deployments (
  id             TEXT PRIMARY KEY,
  rollout_id     TEXT NOT NULL REFERENCES rollouts(id),
  device_id      TEXT NOT NULL REFERENCES devices(id),
  phase          INTEGER NOT NULL,
  state          TEXT NOT NULL,
  attempts       INTEGER NOT NULL DEFAULT 0,
  offered_at     INTEGER,
  failure_reason TEXT,
  from_version   TEXT,
  rollback       TEXT,
  created        INTEGER NOT NULL,
  updated        INTEGER NOT NULL,
  UNIQUE (rollout_id, device_id)
);
CREATE INDEX deployments_device ON deployments(device_id);
CREATE INDEX deployments_state ON deployments(rollout_id, state);

CREATE TABLE api_tokens (
  id        TEXT PRIMARY KEY,
  name      TEXT NOT NULL,
  role      TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),
  hash      TEXT NOT NULL UNIQUE,
  created   INTEGER NOT NULL,
  last_used INTEGER,
  revoked   INTEGER
);

CREATE TABLE audit_log (
  id      INTEGER PRIMARY KEY,
  ts      INTEGER NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  target  TEXT,
  detail  TEXT NOT NULL DEFAULT '{}'
);
`,
  },
  {
    version: 2,
    name: 'nonces of accepted device passwords (replay protection across restarts)',
    sql: `
CREATE TABLE auth_nonces (
  key    TEXT PRIMARY KEY,
  until  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX auth_nonces_until ON auth_nonces(until);
`,
  },
  {
    version: 3,
    name: 'vulnerability records, findings per release, policy documents and promotions',
    sql: `
CREATE TABLE vuln_records (
  id        TEXT PRIMARY KEY,
  modified  INTEGER NOT NULL,
  withdrawn INTEGER NOT NULL DEFAULT 0,
  severity  TEXT NOT NULL,
  score     REAL,
  record    TEXT NOT NULL,
  import_id INTEGER NOT NULL
);

CREATE TABLE vuln_imports (
  id        INTEGER PRIMARY KEY,
  ts        INTEGER NOT NULL,
  actor     TEXT NOT NULL,
  files     INTEGER NOT NULL,
  added     INTEGER NOT NULL,
  replaced  INTEGER NOT NULL,
  unchanged INTEGER NOT NULL,
  skipped   INTEGER NOT NULL,
  ecosystems TEXT NOT NULL
);

CREATE TABLE release_scans (
  release_id TEXT PRIMARY KEY,
  ts         INTEGER NOT NULL,
  import_id  INTEGER,
  packages   INTEGER NOT NULL,
  findings   TEXT NOT NULL
);

CREATE TABLE policies (
  version  INTEGER PRIMARY KEY,
  document TEXT NOT NULL,
  actor    TEXT NOT NULL,
  created  INTEGER NOT NULL
);

CREATE TABLE promotions (
  id             INTEGER PRIMARY KEY,
  release_id     TEXT NOT NULL,
  from_channel   TEXT,
  to_channel     TEXT NOT NULL,
  actor          TEXT NOT NULL,
  ts             INTEGER NOT NULL,
  policy_version INTEGER,
  scan           TEXT NOT NULL,
  violations     TEXT NOT NULL DEFAULT '[]',
  override_reason TEXT
);
CREATE INDEX promotions_release ON promotions(release_id, id);
`,
  },
  {
    version: 4,
    name: 'device search indexes (tags table kept by triggers) and the sampled versions-over-time history',
    sql: `
CREATE TABLE device_tags (
  tag       TEXT NOT NULL,
  device_id TEXT NOT NULL,
  PRIMARY KEY (tag, device_id)
) WITHOUT ROWID;
CREATE INDEX device_tags_device ON device_tags(device_id);
INSERT OR IGNORE INTO device_tags (tag, device_id) SELECT j.value, d.id FROM devices d, json_each(d.tags) j;
-- Triggers keep device_tags equal to devices.tags whatever code writes the column.
CREATE TRIGGER device_tags_insert AFTER INSERT ON devices BEGIN
  INSERT OR IGNORE INTO device_tags (tag, device_id) SELECT value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER device_tags_update AFTER UPDATE OF tags ON devices WHEN NEW.tags IS NOT OLD.tags BEGIN
  DELETE FROM device_tags WHERE device_id = OLD.id;
  INSERT OR IGNORE INTO device_tags (tag, device_id) SELECT value, NEW.id FROM json_each(NEW.tags);
END;
CREATE TRIGGER device_tags_delete AFTER DELETE ON devices BEGIN
  DELETE FROM device_tags WHERE device_id = OLD.id;
END;

-- Each filter of the device search walks an index in id order (the page order).
DROP INDEX devices_status;
CREATE INDEX devices_status_id ON devices(status, id);
CREATE INDEX devices_hardware_id ON devices(hardware, id);
CREATE INDEX devices_version_id ON devices(version, id);
CREATE INDEX devices_group_id ON devices(grp, id);
CREATE INDEX devices_channel_id ON devices(channel, id);

-- Accepted devices per version, sampled by the server on a timer; bounded by age and count.
CREATE TABLE version_samples (
  ts     INTEGER PRIMARY KEY,
  counts TEXT NOT NULL
);
`,
  },
  {
    version: 5,
    name: 'audit log by target and by actor (a device timeline reads both without scanning the log)',
    sql: `
CREATE INDEX audit_target_id ON audit_log(target, id);
CREATE INDEX audit_actor_id ON audit_log(actor, id);
`,
  },
  // Written once for both engines (PostgreSQL applies the same migration).
  { version: 6, name: CLUSTER_MIGRATION.name, sql: CLUSTER_MIGRATION.sqlite },
  CONNECTION_NODE_MIGRATION,
  { version: 8, name: CLUSTER_SECRETS_MIGRATION.name, sql: CLUSTER_SECRETS_MIGRATION.sqlite },
];
