import { type Static, Type } from '@sinclair/typebox';

/**
 * The rollout policy: one TypeBox schema (the API route validates request bodies with it, and
 * fastify's ajv fills in the defaults) and `normalizePolicy`, which does the same for any caller
 * plus the checks JSON Schema cannot express. Percentages are 0–100 with up to two decimals
 * (AWS IoT Jobs style); durations are seconds unless the name says otherwise.
 */

const strict = { additionalProperties: false } as const;
const Name = Type.String({ minLength: 1, maxLength: 128 });
const Label = Type.String({ minLength: 1, maxLength: 128 });

export const TargetSelector = Type.Object(
  {
    /** Any of these hardware ids (absent or empty = any). */
    hardware: Type.Optional(Type.Array(Label, { maxItems: 64 })),
    /** All of these tags. */
    tags: Type.Optional(Type.Array(Label, { maxItems: 32 })),
    /** Any of these device groups. */
    groups: Type.Optional(Type.Array(Label, { maxItems: 64 })),
    /** Any of these currently running versions. */
    versions: Type.Optional(Type.Array(Label, { maxItems: 64 })),
    /** Any of these promotion channels (dev, staging, prod, ...). */
    channels: Type.Optional(Type.Array(Label, { maxItems: 16 })),
    /** Only these device ids. */
    devices: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }), { maxItems: 10_000 }),
    ),
    /** static: the target set is fixed when the rollout starts; dynamic: matching devices keep joining. */
    membership: Type.Union([Type.Literal('static'), Type.Literal('dynamic')], { default: 'static' }),
    /** Where a dynamic joiner goes: the phase now in progress, or always the last phase. */
    joinPhase: Type.Union([Type.Literal('current'), Type.Literal('last')], { default: 'current' }),
  },
  // Left out, the target is every accepted device the release is built for.
  { ...strict, default: {} },
);
export type TargetSelector = Static<typeof TargetSelector>;

export const PhaseSpec = Type.Object(
  {
    name: Type.Optional(Name),
    /** Exactly one of count / percent (percent of the whole target set); the last phase takes the rest. */
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
    /** Phase succeeds when healthy ÷ phase size ≥ this (percent). */
    successThreshold: Type.Number({ minimum: 0, maximum: 100, default: 100 }),
    /** The whole rollout pauses when failed ÷ phase size > this (percent, strictly greater). */
    errorThreshold: Type.Number({ minimum: 0, maximum: 100, default: 0 }),
    /** Devices that must have finished (healthy or failed for good) before the phase is judged. */
    minExecuted: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1 }),
    /** The phase must stay successful this long before the next one starts. */
    soakSeconds: Type.Integer({ minimum: 0, maximum: 30 * 86_400, default: 0 }),
    /** An operator must approve before this phase starts. */
    requireApproval: Type.Boolean({ default: false }),
  },
  strict,
);
export type PhaseSpec = Static<typeof PhaseSpec>;

export const RateSpec = Type.Union([
  Type.Object(
    { kind: Type.Literal('constant'), perMinute: Type.Integer({ minimum: 1, maximum: 100_000 }) },
    strict,
  ),
  Type.Object(
    {
      kind: Type.Literal('exponential'),
      basePerMinute: Type.Integer({ minimum: 1, maximum: 100_000 }),
      /** The rate is multiplied by this each time the criterion count is reached again (AWS: 1.1–5). */
      incrementFactor: Type.Number({ minimum: 1.1, maximum: 5 }),
      /** Multiply after every N devices notified (offered) or N devices healthy. */
      increaseAfter: Type.Union([
        Type.Object({ notified: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }, strict),
        Type.Object({ succeeded: Type.Integer({ minimum: 1, maximum: 1_000_000 }) }, strict),
      ]),
      // No schema default: ajv ignores defaults inside anyOf; normalizePolicy and the engine use 1000.
      maxPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    },
    strict,
  ),
]);
export type RateSpec = Static<typeof RateSpec>;

export const Weekday = Type.Union(
  ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => Type.Literal(d)),
);
export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';

export const MaintenanceWindow = Type.Object(
  {
    /** Days on which the window opens (a window may run past midnight into the next day). */
    days: Type.Array(Weekday, { minItems: 1, maxItems: 7, uniqueItems: true }),
    /** Local opening time HH:MM. */
    start: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$' }),
    durationMinutes: Type.Integer({ minimum: 1, maximum: 7 * 1440 }),
    /** Fixed offset of the local time from UTC, e.g. +02:00 (no DST rules on purpose: predictable). */
    utcOffset: Type.String({ pattern: '^[+-]([01]\\d|2[0-3]):[0-5]\\d$', default: '+00:00' }),
  },
  strict,
);
export type MaintenanceWindow = Static<typeof MaintenanceWindow>;

export const RetrySpec = Type.Object(
  {
    /** Re-offers after the device reported `failed` (download, verify or install error). */
    failed: Type.Integer({ minimum: 0, maximum: 10, default: 0 }),
    /** Re-offers after the device booted the release and fell back (`rolled-back`). */
    rolledBack: Type.Integer({ minimum: 0, maximum: 10, default: 0 }),
    /** Re-offers after the per-device timeout expired. */
    timedOut: Type.Integer({ minimum: 0, maximum: 10, default: 0 }),
  },
  strict,
);
export type RetrySpec = Static<typeof RetrySpec>;

/**
 * Lets the rollout take devices running a newer version down to this release. Never below a
 * device's security floor. The reason is required and lands in the audit log with the policy.
 */
export const AllowDowngrade = Type.Object(
  { reason: Type.String({ minLength: 3, maxLength: 500, pattern: '\\S' }) },
  strict,
);
export type AllowDowngrade = Static<typeof AllowDowngrade>;

export const RolloutPolicy = Type.Object(
  {
    /** Which devices (absent = every accepted device the release is built for). */
    target: Type.Optional(TargetSelector),
    phases: Type.Array(PhaseSpec, { minItems: 1, maxItems: 32 }),
    /** Most devices in flight at once (offered, downloading, installing, installed, rebooting). */
    maxConcurrent: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 50 }),
    /** Most new offers per minute (absent = no rate limit beyond maxConcurrent). */
    rate: Type.Optional(RateSpec),
    /** From offer to a terminal state; then the device is marked timed-out (AWS in-progress timeout). */
    deviceTimeoutSeconds: Type.Integer({ minimum: 10, maximum: 7 * 86_400, default: 7200 }),
    retries: Type.Optional(RetrySpec),
    /** No new offers outside these windows (empty = always open); devices in flight continue. */
    maintenanceWindows: Type.Array(MaintenanceWindow, { maxItems: 32, default: [] }),
    /** When the rollout pauses on errors or is aborted, offer the previous release to devices it updated. */
    autoRollback: Type.Boolean({ default: false }),
    /** Do not start before this time (ISO-8601 UTC). */
    startAt: Type.Optional(
      Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?Z$' }),
    ),
    /** Downgrades are refused unless this names why (see AllowDowngrade). */
    allowDowngrade: Type.Optional(AllowDowngrade),
  },
  strict,
);
/** A policy after `normalizePolicy`: every default filled in. */
export type RolloutPolicy = Static<typeof RolloutPolicy> & { retries: RetrySpec; target: TargetSelector };
/** What an operator may send: defaults may be left out. */
export type RolloutPolicyInput = DeepPartialDefaults<Static<typeof RolloutPolicy>>;

// Fields with a default may be omitted by callers; TypeBox's Static marks them required.
type DeepPartialDefaults<T> = T extends readonly (infer U)[]
  ? DeepPartialDefaults<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartialDefaults<T[K]> }
    : T;

/** Body of `POST /api/v1/rollouts`. */
export const RolloutCreateRequest = Type.Object(
  {
    name: Type.Optional(Name),
    /** The release version to roll out. */
    release: Type.String({ minLength: 1, maxLength: 64 }),
    policy: RolloutPolicy,
  },
  strict,
);
export type RolloutCreateRequest = Static<typeof RolloutCreateRequest>;
