import { isoAfter, type KeyPair, type SignedDelta, signDocument } from '@flotilla/protocol';
import type { DeltaRow } from '../store/repos/deltas.js';

/**
 * A cached delta's descriptor is worth offering only while a device will accept it for the whole
 * life of the offer, and only if it is signed by the delta key the trust root names now.
 */
export function descriptorNeedsRenewal(
  descriptor: SignedDelta,
  deltaKey: KeyPair,
  now: number,
  renewBeforeMs: number,
): boolean {
  const expires = Date.parse(descriptor.signed.expires);
  return !(expires - now > renewBeforeMs) || !descriptor.signatures.some((s) => s.keyid === deltaKey.keyId);
}

/**
 * Re-issues the descriptor of a cached delta with a fresh expiry, signed by the delta role. Only
 * the expiry changes, and only when every other field still names exactly the cache row's
 * bytes (from, to, delta hash and size): the store cannot turn this into signing anything else.
 * Returns null when the row does not qualify (the device then gets the full image).
 */
export function renewDescriptor(
  row: DeltaRow,
  deltaKey: KeyPair,
  now: number,
  ttlDays: number,
): SignedDelta | null {
  const d = row.descriptor?.signed;
  if (row.status !== 'ready' || !d || row.deltaSha256 === null || row.deltaSize === null) return null;
  if (
    d.fromImageSha256 !== row.fromSha256 ||
    d.toImageSha256 !== row.toSha256 ||
    d.deltaSha256 !== row.deltaSha256 ||
    d.deltaSize !== row.deltaSize
  )
    return null;
  return signDocument({ ...d, expires: isoAfter(new Date(now), ttlDays) }, [deltaKey]);
}
