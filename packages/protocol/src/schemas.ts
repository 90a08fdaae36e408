import { type Static, type TProperties, type TSchema, Type } from '@sinclair/typebox';
import { LIMITS } from './limits.js';
import { ReleaseName, SemVer } from './names.js';

/**
 * One source of truth for every document and message: TypeBox schemas are plain JSON Schema
 * (fastify validates routes with them) and give the TypeScript types by `Static<>`.
 * Every top-level document carries `schemaVersion`; receivers refuse versions they do not know.
 */
export const SCHEMA_VERSION = 1;

const strict = { additionalProperties: false } as const;

export const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'lowercase hex sha256' });
export const KeyId = Type.String({
  pattern: '^[0-9a-f]{64}$',
  description: 'sha256 of the raw ed25519 public key',
});
export const Timestamp = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?Z$',
  description: 'UTC ISO-8601 time',
});
export const DeviceId = Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' });
export const HardwareId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' });
export const Uint = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const ShortText = Type.String({ maxLength: 1024 });
const Url = Type.String({ maxLength: 2048 });

/** A top-level document: its `_type`, the schema version, then its own fields and no others. */
function DocumentSchema<const K extends string, P extends TProperties>(type: K, fields: P) {
  return Type.Object(
    { _type: Type.Literal(type), schemaVersion: Type.Literal(SCHEMA_VERSION), ...fields },
    strict,
  );
}

/** An MQTT message: the schema version, its `type`, then its own fields and no others. */
function MessageSchema<const K extends string, P extends TProperties>(type: K, fields: P) {
  return Type.Object(
    { schemaVersion: Type.Literal(SCHEMA_VERSION), type: Type.Literal(type), ...fields },
    strict,
  );
}

export const Role = Type.Union([
  Type.Literal('root'),
  Type.Literal('release'),
  Type.Literal('delta'),
  Type.Literal('recovery'),
]);
export type Role = Static<typeof Role>;
export const ROLES: readonly Role[] = ['root', 'release', 'delta', 'recovery'];

export const SignatureEntry = Type.Object(
  { keyid: KeyId, sig: Type.String({ pattern: '^[0-9a-f]{128}$' }) },
  strict,
);

/** `{ signed, signatures }`: signatures are over canonicalBytes(signed). */
export function Signed<T extends TSchema>(inner: T) {
  return Type.Object(
    { signed: inner, signatures: Type.Array(SignatureEntry, { maxItems: LIMITS.maxSignatures }) },
    strict,
  );
}
export interface SignedEnvelope<T> {
  signed: T;
  signatures: { keyid: string; sig: string }[];
}

// ---- keys (root) metadata -------------------------------------------------------------------

export const PublicKeyEntry = Type.Object(
  { keytype: Type.Literal('ed25519'), public: Type.String({ pattern: '^[0-9a-f]{64}$' }) },
  strict,
);
export const RoleKeys = Type.Object(
  {
    keyids: Type.Array(KeyId, { minItems: 1, maxItems: LIMITS.maxKeys }),
    threshold: Type.Integer({ minimum: 1, maximum: LIMITS.maxKeys }),
  },
  strict,
);
export const RootMetadata = DocumentSchema('root', {
  version: Type.Integer({ minimum: 1 }),
  expires: Timestamp,
  keys: Type.Record(KeyId, PublicKeyEntry, { maxProperties: LIMITS.maxKeys }),
  roles: Type.Object({ root: RoleKeys, release: RoleKeys, delta: RoleKeys, recovery: RoleKeys }, strict),
});
export type RootMetadata = Static<typeof RootMetadata>;
export const SignedRoot = Signed(RootMetadata);
export type SignedRoot = SignedEnvelope<RootMetadata>;

// ---- release manifest -----------------------------------------------------------------------

export const ImageFormat = Type.Union([
  Type.Literal('ext4'),
  Type.Literal('squashfs'),
  Type.Literal('erofs'),
  Type.Literal('raw'),
]);
export type ImageFormat = Static<typeof ImageFormat>;

export const ImageDescriptor = Type.Object(
  {
    format: ImageFormat,
    sha256: Sha256,
    size: Uint,
    chunkSize: Type.Integer({ minimum: 4096, maximum: 64 * 1024 * 1024 }),
    chunkHashes: Type.Array(Sha256, { maxItems: 65536 }),
  },
  strict,
);
export type ImageDescriptor = Static<typeof ImageDescriptor>;

export const Provenance = Type.Object(
  {
    sourceRevision: ShortText,
    builder: ShortText,
    buildTime: Timestamp,
    inputs: Type.Array(Type.Object({ name: ShortText, sha256: Sha256 }, strict), { maxItems: 4096 }),
  },
  strict,
);

export const ReleaseKind = Type.Union([Type.Literal('release'), Type.Literal('recovery')]);
export type ReleaseKind = Static<typeof ReleaseKind>;

export const ReleaseManifest = DocumentSchema('release', {
  kind: ReleaseKind,
  name: ReleaseName,
  version: SemVer,
  securityVersion: Uint,
  compatible: Type.Array(HardwareId, { minItems: 1, maxItems: 256 }),
  image: ImageDescriptor,
  sbom: Type.Object({ format: Type.Literal('CycloneDX-1.5'), sha256: Sha256, size: Uint }, strict),
  provenance: Provenance,
  created: Timestamp,
  expires: Timestamp,
});
export type ReleaseManifest = Static<typeof ReleaseManifest>;
export const SignedRelease = Signed(ReleaseManifest);
export type SignedRelease = SignedEnvelope<ReleaseManifest>;

// ---- delta descriptor -----------------------------------------------------------------------

export const DeltaDescriptor = DocumentSchema('delta', {
  codec: Type.String({ minLength: 1, maxLength: 64 }),
  fromImageSha256: Sha256,
  toImageSha256: Sha256,
  deltaSha256: Sha256,
  deltaSize: Uint,
  fromVersion: SemVer,
  toVersion: SemVer,
  expires: Timestamp,
});
export type DeltaDescriptor = Static<typeof DeltaDescriptor>;
export const SignedDelta = Signed(DeltaDescriptor);
export type SignedDelta = SignedEnvelope<DeltaDescriptor>;

// ---- bundle header --------------------------------------------------------------------------

/** The JSON header of a `.flot` bundle; its sections follow it in this order. */
export const BundleHeader = DocumentSchema('bundle', {
  manifest: SignedRelease,
  sections: Type.Array(
    Type.Object(
      { name: Type.Union([Type.Literal('image'), Type.Literal('sbom')]), size: Uint, sha256: Sha256 },
      strict,
    ),
    { minItems: 1, maxItems: 8 },
  ),
});
export type BundleHeader = Static<typeof BundleHeader>;

// ---- offer (server → device), signed by the online delta role -------------------------------

export const Offer = DocumentSchema('offer', {
  deploymentId: Type.String({ minLength: 1, maxLength: 64 }),
  /** The server's attempt of this deployment (1, then +1 per retry); a re-send repeats it. */
  attempt: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  deviceId: DeviceId,
  issued: Timestamp,
  expires: Timestamp,
  release: SignedRelease,
  full: Type.Object({ url: Url, size: Uint, sha256: Sha256 }, strict),
  delta: Type.Optional(Type.Object({ url: Url, descriptor: SignedDelta }, strict)),
});
export type Offer = Static<typeof Offer>;
export const SignedOffer = Signed(Offer);
export type SignedOffer = SignedEnvelope<Offer>;

// ---- MQTT messages (docs/agent.md#reports-mqtt) ---------------------------------------------

export const Slot = Type.Union([Type.Literal('A'), Type.Literal('B')]);
export type Slot = Static<typeof Slot>;

/** The agent's states (docs/agent.md#state-machine): the agent's transition table and its reports share this list. */
export const AGENT_STATES = [
  'Idle',
  'Offered',
  'Downloading',
  'Installing',
  'Installed',
  'Rebooting',
  'Verifying',
  'Committed',
  'Failed',
  'RollingBack',
  'RolledBack',
] as const;

export const AgentStateName = Type.Union(AGENT_STATES.map((s) => Type.Literal(s)));

export const ErrorReport = Type.Object({ code: Type.String({ maxLength: 64 }), message: ShortText }, strict);

export const DeviceStateMessage = MessageSchema('state', {
  seq: Uint,
  ts: Timestamp,
  version: Type.Union([SemVer, Type.Null()]),
  imageSha256: Type.Union([Sha256, Type.Null()]),
  securityVersion: Uint,
  activeSlot: Slot,
  agentState: AgentStateName,
  deploymentId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  lastError: Type.Union([ErrorReport, Type.Null()]),
});
export type DeviceStateMessage = Static<typeof DeviceStateMessage>;

export const EventKind = Type.Union(
  [
    'offer-accepted',
    'offer-rejected',
    'download-progress',
    'downloaded',
    'install-progress',
    'installed',
    'rebooting',
    'healthy',
    'rolled-back',
    'failed',
    'drift',
    'local-install',
    'hook-output',
    'log',
    // The signed artifact URL expired mid-download: the device asks for a fresh offer.
    'offer-refresh',
  ].map((s) => Type.Literal(s)),
);
export type EventKind = Static<typeof EventKind>;

export const DeviceEventMessage = MessageSchema('event', {
  /** Unique per device: the server records each event id once (a resend is not double-counted). */
  eventId: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' }),
  seq: Uint,
  ts: Timestamp,
  kind: EventKind,
  deploymentId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  version: Type.Optional(SemVer),
  progress: Type.Optional(
    Type.Object({ done: Uint, total: Uint, bytesDownloaded: Type.Optional(Uint) }, strict),
  ),
  reason: Type.Optional(ErrorReport),
  detail: Type.Optional(
    Type.Record(
      Type.String({ maxLength: 64 }),
      Type.Union([Type.String({ maxLength: 4096 }), Uint, Type.Boolean(), Type.Null()]),
      { maxProperties: 32 },
    ),
  ),
});
export type DeviceEventMessage = Static<typeof DeviceEventMessage>;

export const InventoryMessage = MessageSchema('inventory', {
  ts: Timestamp,
  hardware: HardwareId,
  bootloader: Type.Union([Type.Literal('uboot'), Type.Literal('grub'), Type.Literal('file')]),
  agentVersion: Type.String({ maxLength: 64 }),
  slots: Type.Array(
    Type.Object(
      {
        name: Slot,
        size: Uint,
        version: Type.Union([SemVer, Type.Null()]),
        imageSha256: Type.Union([Sha256, Type.Null()]),
      },
      strict,
    ),
    { minItems: 2, maxItems: 2 },
  ),
  freeSpaceBytes: Type.Optional(Uint),
  tags: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 32 })),
});
export type InventoryMessage = Static<typeof InventoryMessage>;

/**
 * Connection status (`status` topic): the agent publishes `online: true` once connected and
 * leaves `online: false` as its MQTT last will, both naming the connection (`session`, fresh per
 * connect), so a broker that tells the server nothing else (Mosquitto, EMQX, ...) still makes
 * online/offline immediate, and a late will of an old connection cannot mark a newer one offline.
 */
export const ConnectionStatusMessage = MessageSchema('status', {
  online: Type.Boolean(),
  session: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' }),
});
export type ConnectionStatusMessage = Static<typeof ConnectionStatusMessage>;

const CommandId = Type.String({ minLength: 1, maxLength: 64 });
export const OfferCommand = MessageSchema('offer', {
  commandId: CommandId,
  offer: SignedOffer,
  /**
   * Where the server publishes its root metadata (`<rootUrl>/<N>.json`): the device fetches
   * root N+1… from there and rotates before it verifies the offer. Outside the signed offer on
   * purpose: every root is verified against the previous one, so the address needs no trust.
   */
  rootUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
});
export const CancelCommand = MessageSchema('cancel', {
  commandId: CommandId,
  deploymentId: Type.String({ maxLength: 64 }),
});
export const RebootRequestCommand = MessageSchema('reboot-request', { commandId: CommandId });
export const DeviceCommand = Type.Union([OfferCommand, CancelCommand, RebootRequestCommand]);
export type DeviceCommand = Static<typeof DeviceCommand>;
export type OfferCommand = Static<typeof OfferCommand>;
