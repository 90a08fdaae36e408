import { type Static, Type } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

/** Highest severity a channel allows; `none` allows no finding of known severity at all. */
export const MaxSeverity = Type.Union(
  ['none', 'low', 'medium', 'high', 'critical'].map((s) => Type.Literal(s)),
);

export const ChannelPolicy = Type.Object(
  {
    /** Findings above this severity fail the policy (unless waived). Omitted: any severity passes. */
    maxSeverity: Type.Optional(MaxSeverity),
    /** "No high with a fix available": a high finding whose record names a fixed version fails. */
    noHighWithFix: Type.Optional(Type.Boolean()),
    /** Findings of unknown severity fail (off by default: records without CVSS are common in Debian's feed). */
    failOnUnknownSeverity: Type.Optional(Type.Boolean()),
    /** The image may be at most this old (days since the manifest's `created`). */
    maxImageAgeDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 36500 })),
    /** Attestations the release must carry: `provenance` (signed SLSA provenance in the manifest). */
    requiredAttestations: Type.Optional(
      Type.Array(Type.Literal('provenance'), { maxItems: 1, uniqueItems: true }),
    ),
    /** What the provenance must say (checked on the signed manifest). */
    provenance: Type.Optional(
      Type.Object(
        {
          builderId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
          /** The source revision must start with this (e.g. `https://git.example/fw.git@`). */
          sourceRepository: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        },
        strict,
      ),
    ),
  },
  strict,
);
export type ChannelPolicy = Static<typeof ChannelPolicy>;

export const Waiver = Type.Object(
  {
    /** The record id or one of its aliases (e.g. a CVE id). */
    id: Type.String({ minLength: 1, maxLength: 128 }),
    /** The binary or source package the waiver is for. */
    package: Type.String({ minLength: 1, maxLength: 256 }),
    reason: Type.String({ minLength: 3, maxLength: 2000 }),
    approvedBy: Type.String({ minLength: 1, maxLength: 200 }),
    /** RFC 3339; the waiver stops applying at this instant. */
    expires: Type.String({
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2})$',
    }),
    /** Channels the waiver applies to (default: all). */
    channels: Type.Optional(Type.Array(Type.String({ pattern: '^(dev|staging|prod)$' }), { maxItems: 3 })),
  },
  strict,
);
export type Waiver = Static<typeof Waiver>;

export const PolicyDocument = Type.Object(
  {
    schemaVersion: Type.Literal(1),
    channels: Type.Object(
      {
        dev: Type.Optional(ChannelPolicy),
        staging: Type.Optional(ChannelPolicy),
        prod: Type.Optional(ChannelPolicy),
      },
      strict,
    ),
    waivers: Type.Optional(Type.Array(Waiver, { maxItems: 10_000 })),
  },
  strict,
);
export type PolicyDocument = Static<typeof PolicyDocument>;

/** Out of the box: prod refuses critical findings; dev and staging record findings but allow them. */
export const DEFAULT_POLICY: PolicyDocument = {
  schemaVersion: 1,
  channels: { prod: { maxSeverity: 'high' } },
  waivers: [],
};
