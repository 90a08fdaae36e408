import { type TSchema, Type } from '@sinclair/typebox';

/**
 * Response schemas of what the API presents (see present.ts). Responses serialise through these
 * schemas, which drops undeclared properties and orders declared ones as listed here: keep each
 * in the order its presenter builds the object, and leave shapes another module owns open.
 */
export const IsoTime = Type.String({ description: 'ISO 8601 time' });
export const EpochMs = Type.Integer({ description: 'ms since the epoch' });
export const OrNull = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const OpenObject = (description: string) =>
  Type.Object({}, { additionalProperties: true, description });

export const DeviceView = Type.Object({
  id: Type.String(),
  status: Type.String(),
  publicKey: Type.String(),
  hardware: OrNull(Type.String()),
  tags: Type.Array(Type.String()),
  group: OrNull(Type.String()),
  channel: Type.String(),
  version: OrNull(Type.String()),
  imageSha256: OrNull(Type.String()),
  securityVersion: Type.Integer(),
  activeSlot: OrNull(Type.String()),
  agentState: OrNull(Type.String()),
  deploymentId: OrNull(Type.String()),
  lastError: OrNull(
    Type.Object(
      { code: Type.String(), message: Type.String() },
      { description: 'the last error the device reported' },
    ),
  ),
  online: Type.Boolean(),
  lastSeen: OrNull(IsoTime),
  created: IsoTime,
  updated: IsoTime,
});

export const DeploymentView = Type.Object({
  id: Type.String(),
  rolloutId: Type.String(),
  deviceId: Type.String(),
  phase: Type.Integer(),
  state: Type.String(),
  attempts: Type.Integer(),
  offeredAt: OrNull(EpochMs),
  updatedAt: EpochMs,
  failureReason: OrNull(Type.String()),
  fromVersion: OrNull(Type.String()),
  rollback: OrNull(
    Type.Object(
      {
        toVersion: Type.String(),
        state: Type.String(),
        offeredAt: EpochMs,
        updatedAt: EpochMs,
        failureReason: OrNull(Type.String()),
      },
      { description: 'the rollback offer made to this device (the previous release offered back)' },
    ),
  ),
  created: EpochMs,
});

export const ReleaseView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  version: Type.String(),
  kind: Type.String(),
  securityVersion: Type.Integer(),
  compatible: Type.Array(Type.String()),
  image: Type.Object({ sha256: Type.String(), size: Type.Integer(), url: Type.String() }),
  sbom: OrNull(Type.Object({ sha256: Type.String(), url: Type.String() })),
  channels: Type.Array(Type.String()),
  created: IsoTime,
  // Open on purpose: a signed document, served as stored (a schema would drop or reorder its fields).
  manifest: Type.Optional(OpenObject('the signed release manifest, as stored')),
});
