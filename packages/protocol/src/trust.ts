import { canonicalBytes } from './canonical-json.js';
import { sha256Hex } from './crypto.js';
import { FlotillaError } from './errors.js';
import {
  type DeltaDescriptor,
  type Offer,
  type ReleaseManifest,
  type Role,
  type RootMetadata,
  SignedDelta,
  type SignedEnvelope,
  SignedOffer,
  SignedRelease,
  type SignedRoot,
  SignedRoot as SignedRootSchema,
} from './schemas.js';
import { verifySignature } from './signing.js';
import { validate } from './validate.js';

/**
 * The trust rules, as one pure module (no I/O, the clock is an argument). Order follows TUF:
 * shape → signatures of the right role up to the threshold → expiry → content rules
 * (anti-rollback, hardware compatibility, delta base). Each failure has its own error code.
 */

export interface RoleCheck {
  /** Which keys count: normally the trusted root metadata. */
  root: RootMetadata;
  role: Role;
}

/** Counts distinct valid signatures by keys of `role`; throws the most specific error when short. */
export function verifyThreshold(envelope: SignedEnvelope<unknown>, { root, role }: RoleCheck): string[] {
  const roleKeys = root.roles[role];
  if (envelope.signatures.length === 0)
    throw new FlotillaError('FLOTILLA_ERR_SIGNATURE_MISSING', `${role} document`);
  const message = canonicalBytes(envelope.signed);
  const valid = new Set<string>();
  let unknown = 0;
  let wrongRole = 0;
  let invalid = 0;
  for (const { keyid, sig } of envelope.signatures) {
    const key = root.keys[keyid];
    if (!key) {
      unknown++;
      continue;
    }
    if (!roleKeys.keyids.includes(keyid)) {
      // A valid signature by a key of another role is still not authority for this one.
      if (verifySignature(envelope.signed, sig, key.public, message)) wrongRole++;
      else invalid++;
      continue;
    }
    if (verifySignature(envelope.signed, sig, key.public, message)) valid.add(keyid);
    else invalid++;
  }
  if (valid.size >= roleKeys.threshold) return [...valid];
  if (valid.size > 0)
    throw new FlotillaError(
      'FLOTILLA_ERR_THRESHOLD',
      `${valid.size} of ${roleKeys.threshold} ${role} signatures`,
    );
  if (invalid > 0) throw new FlotillaError('FLOTILLA_ERR_SIGNATURE_INVALID', `${role} document`);
  if (wrongRole > 0)
    throw new FlotillaError('FLOTILLA_ERR_KEY_WRONG_ROLE', `no key of role '${role}' signed it`);
  if (unknown > 0)
    throw new FlotillaError('FLOTILLA_ERR_KEY_UNKNOWN', `${unknown} signature(s) by unknown keys`);
  throw new FlotillaError('FLOTILLA_ERR_THRESHOLD', `0 of ${roleKeys.threshold} ${role} signatures`);
}

export function checkNotExpired(expires: string, now: Date, what: string): void {
  const t = Date.parse(expires);
  if (!Number.isFinite(t) || t <= now.getTime())
    throw new FlotillaError('FLOTILLA_ERR_EXPIRED', `${what} expired at ${expires}`);
}

/**
 * The root a device already trusts (its stored root.json): self-signed by a threshold of its own
 * root keys. Expiry is *not* checked here: a device offline past its root's expiry must still be
 * able to load it and rotate to a newer one (TUF checks expiry only on the final root).
 */
export function verifyTrustedRoot(envelope: unknown): RootMetadata {
  const env = validate(SignedRootSchema, envelope, 'root metadata') as SignedRoot;
  checkRootConsistency(env.signed);
  verifyThreshold(env, { root: env.signed, role: 'root' });
  return env.signed;
}

/** A device's initial root: must be self-signed by a threshold of its own root keys and unexpired. */
export function verifyInitialRoot(envelope: unknown, now: Date): RootMetadata {
  const root = verifyTrustedRoot(envelope);
  checkNotExpired(root.expires, now, 'root metadata');
  return root;
}

/**
 * One step of the root chain: version must be exactly trusted+1 and the new root must be signed
 * by a threshold of the *old* root keys and a threshold of the *new* root keys (so neither a
 * stolen old key set nor keys the attacker just made up can rotate alone). No expiry check: an
 * intermediate root may long have expired (TUF), only the last one of a chain must be current.
 */
export function verifyRootStep(trusted: RootMetadata, envelope: unknown): RootMetadata {
  const env = validate(SignedRootSchema, envelope, 'root metadata') as SignedRoot;
  const next = env.signed;
  checkRootConsistency(next);
  if (next.version !== trusted.version + 1) {
    throw new FlotillaError('FLOTILLA_ERR_ROOT_VERSION', `trusted ${trusted.version}, got ${next.version}`);
  }
  try {
    verifyThreshold(env, { root: trusted, role: 'root' });
    verifyThreshold(env, { root: next, role: 'root' });
  } catch (cause) {
    throw new FlotillaError('FLOTILLA_ERR_ROOT_ROTATION', (cause as Error).message, { cause });
  }
  return next;
}

/** Rotation to a root that becomes the final one: a chain step, and the new root is unexpired. */
export function verifyRootRotation(trusted: RootMetadata, envelope: unknown, now: Date): RootMetadata {
  const next = verifyRootStep(trusted, envelope);
  checkNotExpired(next.expires, now, 'root metadata');
  return next;
}

/**
 * TUF's root update as one pure function: the trusted root (signatures only), then each newer
 * root in order (version +1, old and new thresholds), then expiry of the *final* root alone.
 * Returns the final root; throws on the first bad link (the caller keeps what it trusted).
 */
export function verifyRootChain(trusted: unknown, newer: readonly unknown[], now: Date): RootMetadata {
  let root = verifyTrustedRoot(trusted);
  for (const next of newer) root = verifyRootStep(root, next);
  checkNotExpired(root.expires, now, 'root metadata');
  return root;
}

function checkRootConsistency(root: RootMetadata): void {
  for (const [keyid, entry] of Object.entries(root.keys)) {
    // The key id must be the hash of the key, else one key could pose as two for the threshold.
    if (keyid !== sha256OfHex(entry.public))
      throw new FlotillaError('FLOTILLA_ERR_SCHEMA', `key id ${keyid.slice(0, 12)}… does not match its key`);
  }
  for (const [role, rk] of Object.entries(root.roles)) {
    if (new Set(rk.keyids).size !== rk.keyids.length)
      throw new FlotillaError('FLOTILLA_ERR_SCHEMA', `role ${role} lists a key twice`);
    if (rk.threshold > rk.keyids.length)
      throw new FlotillaError('FLOTILLA_ERR_SCHEMA', `role ${role} threshold exceeds its keys`);
    for (const k of rk.keyids)
      if (!root.keys[k]) throw new FlotillaError('FLOTILLA_ERR_SCHEMA', `role ${role} names an unlisted key`);
  }
}

function sha256OfHex(hex: string): string {
  return sha256Hex(Buffer.from(hex, 'hex'));
}

export interface DeviceFacts {
  hardware: string;
  /** The highest securityVersion this device has committed. */
  securityVersion: number;
}

/** Verifies a signed release manifest: role from its kind (release or recovery), expiry, shape. */
export function verifyRelease(
  envelope: unknown,
  root: RootMetadata,
  now: Date,
  opts: { allowKinds?: ReleaseManifest['kind'][] } = {},
): ReleaseManifest {
  const env = validateEnvelope(SignedRelease, envelope, 'release manifest');
  const manifest = env.signed as ReleaseManifest;
  const allow = opts.allowKinds ?? ['release'];
  if (!allow.includes(manifest.kind))
    throw new FlotillaError('FLOTILLA_ERR_KEY_WRONG_ROLE', `a ${manifest.kind} image is not accepted here`);
  verifyThreshold(env, { root, role: manifest.kind });
  checkNotExpired(manifest.expires, now, 'release manifest');
  checkImageDescriptor(manifest);
  return manifest;
}

/** Chunk hashes must cover the image exactly, else a short list would leave bytes unverified. */
function checkImageDescriptor(m: ReleaseManifest): void {
  const { size, chunkSize, chunkHashes } = m.image;
  if (chunkHashes.length !== Math.ceil(size / chunkSize)) {
    throw new FlotillaError(
      'FLOTILLA_ERR_SCHEMA',
      `image has ${chunkHashes.length} chunk hashes, size needs ${Math.ceil(size / chunkSize)}`,
    );
  }
}

/** Anti-rollback and compatibility: may this (verified) release go onto this device? */
export function checkInstallable(manifest: ReleaseManifest, device: DeviceFacts): void {
  if (!manifest.compatible.includes(device.hardware)) {
    throw new FlotillaError(
      'FLOTILLA_ERR_INCOMPATIBLE_HARDWARE',
      `'${device.hardware}' is not in [${manifest.compatible.join(', ')}]`,
    );
  }
  if (manifest.securityVersion < device.securityVersion) {
    throw new FlotillaError(
      'FLOTILLA_ERR_DOWNGRADE',
      `release ${manifest.securityVersion} < installed ${device.securityVersion}`,
    );
  }
}

export function verifyDeltaDescriptor(envelope: unknown, root: RootMetadata, now: Date): DeltaDescriptor {
  const env = validateEnvelope(SignedDelta, envelope, 'delta descriptor');
  verifyThreshold(env, { root, role: 'delta' });
  checkNotExpired((env.signed as DeltaDescriptor).expires, now, 'delta descriptor');
  return env.signed as DeltaDescriptor;
}

export interface VerifiedOffer {
  offer: Offer;
  release: ReleaseManifest;
  delta?: DeltaDescriptor;
}

/**
 * Everything a device checks before it downloads a byte: the offer (signed by the online role,
 * short-lived, addressed to this device), the release inside it, the device-level rules, and —
 * when a delta is offered — that it goes from exactly the active image to exactly the release.
 * A delta whose base is not the active slot is refused here (the agent then falls back to full).
 */
export function verifyOffer(
  envelope: unknown,
  ctx: {
    root: RootMetadata;
    now: Date;
    deviceId: string;
    device: DeviceFacts;
    activeImageSha256: string | null;
  },
): VerifiedOffer {
  const env = validateEnvelope(SignedOffer, envelope, 'offer');
  verifyThreshold(env, { root: ctx.root, role: 'delta' });
  const offer = env.signed as Offer;
  checkNotExpired(offer.expires, ctx.now, 'offer');
  if (offer.deviceId !== ctx.deviceId)
    throw new FlotillaError('FLOTILLA_ERR_WRONG_DOCUMENT_TYPE', `offer is for device ${offer.deviceId}`);
  const release = verifyRelease(offer.release, ctx.root, ctx.now);
  checkInstallable(release, ctx.device);
  if (offer.full.sha256 !== release.image.sha256 || offer.full.size !== release.image.size) {
    throw new FlotillaError('FLOTILLA_ERR_SCHEMA', 'offer artifact does not match the release image');
  }
  if (!offer.delta) return { offer, release };
  const delta = verifyDeltaDescriptor(offer.delta.descriptor, ctx.root, ctx.now);
  checkDeltaApplies(delta, release, ctx.activeImageSha256);
  return { offer, release, delta };
}

export function checkDeltaApplies(
  delta: DeltaDescriptor,
  release: ReleaseManifest,
  activeImageSha256: string | null,
): void {
  if (delta.toImageSha256 !== release.image.sha256)
    throw new FlotillaError('FLOTILLA_ERR_DELTA_BASE_MISMATCH', 'delta does not produce the release image');
  if (delta.fromImageSha256 !== activeImageSha256)
    throw new FlotillaError('FLOTILLA_ERR_DELTA_BASE_MISMATCH', 'delta base is not the active slot');
}

/** Shape first, with the most useful error: unsigned, the wrong kind of document, or a bad field. */
function validateEnvelope(
  schema: typeof SignedRelease | typeof SignedDelta | typeof SignedOffer,
  envelope: unknown,
  what: string,
): SignedEnvelope<unknown> {
  if (!envelope || typeof envelope !== 'object' || !('signed' in envelope))
    throw new FlotillaError('FLOTILLA_ERR_SIGNATURE_MISSING', what);
  const env = envelope as SignedEnvelope<unknown>;
  if (!Array.isArray(env.signatures)) throw new FlotillaError('FLOTILLA_ERR_SIGNATURE_MISSING', what);
  const type = (env.signed as { _type?: unknown })?._type;
  const expected = schema.properties.signed.properties._type.const;
  if (type !== expected)
    throw new FlotillaError('FLOTILLA_ERR_WRONG_DOCUMENT_TYPE', `expected ${expected}, got ${String(type)}`);
  validate(schema, env, what);
  return env;
}
