import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/**
 * The server's one error registry: stable codes (clients, the CLI and the dashboard key on them),
 * a message, the HTTP status the API answers with and a hint saying what to do.
 */
export const SERVER_ERRORS = {
  FLOTILLA_ERR_SERVER_VALIDATION: {
    status: 400,
    message: 'request does not match the schema',
    hint: 'check the field named in the message; the OpenAPI document is at /docs',
  },
  FLOTILLA_ERR_SERVER_UNAUTHENTICATED: {
    status: 401,
    message: 'missing or unknown API token',
    hint: 'send `Authorization: Bearer <token>`; the first admin token is in <data-dir>/admin-token, more come from POST /api/v1/tokens',
  },
  FLOTILLA_ERR_SERVER_FORBIDDEN: {
    status: 403,
    message: 'this token role may not do that',
    hint: 'viewer tokens read, operator tokens manage devices, releases and rollouts, admin tokens also manage tokens and keys',
  },
  FLOTILLA_ERR_SERVER_NOT_FOUND: { status: 404, message: 'not found', hint: 'check the id' },
  FLOTILLA_ERR_SERVER_CONFLICT: {
    status: 409,
    message: 'conflicts with the current state',
    hint: 'reload the resource and retry',
  },
  FLOTILLA_ERR_SERVER_RELEASE_EXISTS: {
    status: 409,
    message: 'release version already exists with different content',
    hint: 'versions are immutable: bump the version',
  },
  FLOTILLA_ERR_SERVER_RELEASE_INVALID: {
    status: 422,
    message: 'release does not verify against the server trust root',
    hint: 'sign the manifest with a release key listed in the root metadata the server uses',
  },
  FLOTILLA_ERR_SERVER_CHANNEL_ORDER: {
    status: 409,
    message: 'releases move through channels in order dev → staging → prod',
    hint: 'promote to the next channel first',
  },
  FLOTILLA_ERR_SERVER_NO_RELEASE_KEY: {
    status: 409,
    message: 'this server holds no release key, so it cannot sign a build',
    hint: 'build and sign with the CLI, then upload the bundle',
  },
  FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE: {
    status: 413,
    message: 'upload exceeds the size limit',
    hint: 'raise limits.maxUploadBytes or upload a smaller file',
  },
  FLOTILLA_ERR_SERVER_UPLOAD_INVALID: {
    status: 400,
    message: 'upload is not a valid file of the expected kind',
    hint: 'upload a rootfs tarball, a partition image or a .flot bundle',
  },
  FLOTILLA_ERR_SERVER_URL_EXPIRED: {
    status: 403,
    message: 'signed artifact URL has expired',
    hint: 'ask for a fresh offer (the agent does so by itself) and resume the Range download',
  },
  FLOTILLA_ERR_SERVER_URL_SIGNATURE: {
    status: 403,
    message: 'signed artifact URL is not valid for this artifact',
    hint: 'use the URL from a current offer unchanged, or fetch with an operator API token',
  },
  FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG: {
    status: 500,
    message: 'artifact delivery settings are invalid',
    hint: 'give --artifact-base-url as http(s)://host[:port] (an origin) and --artifact-accel-redirect as the internal nginx location, e.g. /_flotilla/artifacts/ (docs/cluster.md)',
  },
  FLOTILLA_ERR_SERVER_RATE_LIMITED: {
    status: 429,
    message: 'too many failed logins from this address',
    hint: 'wait for the time in Retry-After, then use a valid token',
  },
  FLOTILLA_ERR_SERVER_RANGE: {
    status: 416,
    message: 'requested range is not satisfiable',
    hint: 'ask for bytes inside the artifact size',
  },
  FLOTILLA_ERR_SERVER_DEVICE_STATE: {
    status: 409,
    message: 'device is not in a state that allows this',
    hint: 'check the device status (pending, accepted, rejected, decommissioned)',
  },
  FLOTILLA_ERR_SERVER_DEVICE_KEY_MISMATCH: {
    status: 409,
    message: 'device id is registered with another key',
    hint: 'decommission the old device record first',
  },
  FLOTILLA_ERR_SERVER_PROVISIONING_TOKEN: {
    status: 401,
    message: 'provisioning token is unknown, expired or already used',
    hint: 'create a new one with POST /api/v1/provisioning-tokens',
  },
  FLOTILLA_ERR_SERVER_PENDING_FULL: {
    status: 503,
    message: 'too many devices are waiting for acceptance',
    hint: 'accept or reject pending devices (GET /api/v1/devices?status=pending), register with a provisioning token, or raise limits.maxPendingDevices',
  },
  FLOTILLA_ERR_SERVER_REGISTER_RATE_LIMITED: {
    status: 429,
    message: 'too many registration attempts from this address',
    hint: 'wait a minute and retry; register with a provisioning token (accepted registrations are not limited) or raise limits.registerPerSourcePerMinute',
  },
  FLOTILLA_ERR_SERVER_ROLLOUT_STATE: {
    status: 409,
    message: 'rollout is not in a state that allows this',
    hint: 'check the rollout status',
  },
  FLOTILLA_ERR_SERVER_ROLLOUT_RECOVERY: {
    status: 422,
    message: 'a recovery release cannot be rolled out',
    hint: 'recovery releases are installed on the device itself (`flotilla-agent install <bundle>`); roll out a release-kind build',
  },
  FLOTILLA_ERR_SERVER_ROLLOUT_DOWNGRADE: {
    status: 409,
    message: 'the rollout would take devices down to an older version',
    hint: 'target only older devices, or set policy.allowDowngrade.reason (CLI: --allow-downgrade --reason "...")',
  },
  FLOTILLA_ERR_SERVER_ROLLOUT_SECURITY_FLOOR: {
    status: 409,
    message: "the release is below targeted devices' security floor",
    hint: 'devices refuse releases under their securityVersion floor, downgrade or not: build the fix with a securityVersion at least their floor, or leave those devices out of the target',
  },
  FLOTILLA_ERR_SERVER_DELTA: {
    status: 500,
    message: 'delta generation failed',
    hint: 'devices fall back to the full image; see the server log',
  },
  FLOTILLA_ERR_SERVER_KEYS: {
    status: 500,
    message: 'server keys are missing or invalid',
    hint: 'import a root.json and role keys made by `flotilla keys init`, or start on an empty keys directory',
  },
  FLOTILLA_ERR_SERVER_ROOT_KEY_ONLINE: {
    status: 500,
    message: 'the keys directory holds a root private key',
    hint: 'root keys are offline material and the server never uses them: move keys/root*.key to offline storage and start again (a throw-away test server may use --dev-keys)',
  },
  FLOTILLA_ERR_SERVER_ROOT_REFUSED: {
    status: 409,
    message: 'new root metadata refused',
    hint: "publish root N+1 made by `flotilla keys rotate` (signed by the old and the new root keys, unexpired) that still names the server's delta key",
  },
  FLOTILLA_ERR_SERVER_STORE: {
    status: 500,
    message: 'storage error',
    hint: 'the message names the file or directory: restore server.db from a backup, or make the data directory writable; the server never starts over on a data directory that holds keys, artifacts or a token',
  },
  FLOTILLA_ERR_SERVER_STORAGE_FULL: {
    status: 507,
    message: 'the disk of the data directory is full',
    hint: 'free space on the data directory (POST /api/v1/retention/prune removes old releases) and retry',
  },
  FLOTILLA_ERR_SERVER_UPLOADS_BUSY: {
    status: 503,
    message: 'too many uploads at once',
    hint: 'retry when the running uploads finish (limits.maxConcurrentUploads)',
  },
  FLOTILLA_ERR_SERVER_UPLOAD_SPACE: {
    status: 507,
    message: 'uploads in progress would pass the temporary space limit',
    hint: 'retry when the running uploads finish, or raise limits.maxUploadTempBytes',
  },
  FLOTILLA_ERR_SERVER_BROKER: {
    status: 502,
    message: 'MQTT broker error',
    hint: 'check that the broker is running and reachable',
  },
  FLOTILLA_ERR_SERVER_REDIS: {
    status: 503,
    message: 'Redis (shared broker state of several server nodes) is unreachable',
    hint: 'start Redis or fix --redis redis://host:port (every node uses the same one); without --redis the server runs alone with its embedded broker',
  },
  FLOTILLA_ERR_SERVER_CONFIG: {
    status: 500,
    message: 'a server option is not valid',
    hint: 'the message names the option and what it takes; see `flotilla server --help`',
  },
  FLOTILLA_ERR_SERVER_RETENTION_DEPLOYED: {
    status: 409,
    message: 'release is deployed or referenced and cannot be pruned',
    hint: 'abort the rollout or move the devices first',
  },
  FLOTILLA_ERR_SERVER_KEYS_CONFLICT: {
    status: 409,
    message: 'the data directory already holds other keys than --import-keys names',
    hint: 'start with a new --data-dir to use the imported keys, or drop --import-keys to keep the existing ones (devices trust only one of the two roots)',
  },
  FLOTILLA_ERR_SERVER_INTERNAL: { status: 500, message: 'internal error', hint: 'see the server log' },
} as const satisfies Record<string, ErrorEntry>;

export type ServerErrorCode = keyof typeof SERVER_ERRORS;

export class ServerError extends errorClass(SERVER_ERRORS, 'server', 'ServerError') {}

/**
 * Errors of the store's database engine, whichever it is (SQLite file or PostgreSQL server),
 * registered here beside the server's own: the API and the CLI answer them the same way. A schema
 * newer than the server stays FLOTILLA_ERR_SERVER_STORE on SQLite (a restored server.db); on a
 * shared PostgreSQL it is FLOTILLA_ERR_STORE_SCHEMA_NEWER (another node was upgraded first).
 */
export const STORE_ERRORS = {
  FLOTILLA_ERR_STORE_UNAVAILABLE: {
    status: 503,
    message: 'the database server cannot be reached',
    hint: 'is PostgreSQL running and reachable? check host, port (or socket directory), database, user and password in the store URL (postgres://user:password@host:5432/db); a running server retries on the next request, a starting one exits: start it again once PostgreSQL answers',
  },
  FLOTILLA_ERR_STORE_URL: {
    status: 500,
    message: 'the store URL is not valid',
    hint: 'give postgres://user:password@host:5432/database, or postgres://user@/database?host=/run/postgresql for a unix socket',
  },
  FLOTILLA_ERR_STORE_INTEGER: {
    status: 500,
    message: 'a number in the database is beyond the integers JavaScript holds exactly',
    hint: 'values above 2^53-1 are refused rather than rounded: check the row named in the message',
  },
  FLOTILLA_ERR_STORE_CONFLICT: {
    status: 409,
    message: 'the write conflicts with a stored row',
    hint: 'a row with this key exists already, or another row still refers to this one (another server node may have written it at the same moment): reload and retry',
  },
  FLOTILLA_ERR_STORE_COLLATION: {
    status: 500,
    message: 'the PostgreSQL database does not sort text byte by byte',
    hint: "device ids, searches and pages rely on byte order, as on SQLite: create the store's database with the C collation (CREATE DATABASE flotilla TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C', or createdb --template=template0 --locale=C flotilla)",
  },
  FLOTILLA_ERR_STORE_TEXT: {
    status: 400,
    message: 'text with a NUL character cannot be stored',
    hint: 'PostgreSQL text holds no NUL (\\u0000) character, so neither engine stores one: remove it from the names, labels and ids you send',
  },
  FLOTILLA_ERR_STORE_LEASE_LOST: {
    status: 409,
    message: 'this node no longer holds the lease',
    hint: 'another node took it over (or the database connection dropped); this node stops that work and tries again later',
  },
  FLOTILLA_ERR_STORE_SCHEMA_NEWER: {
    status: 500,
    message: 'the shared database was migrated by a newer Flotilla server',
    hint: 'upgrade this node to the Flotilla version the other nodes run, then start it again; a database is never migrated back (docs/cluster.md, Faults)',
  },
} as const satisfies Record<string, ErrorEntry>;

export type StoreErrorCode = keyof typeof STORE_ERRORS;

export class StoreError extends errorClass(STORE_ERRORS, 'store', 'StoreError') {}
