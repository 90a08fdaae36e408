import { canonicalBytes } from './canonical-json.js';
import { fromHex, type KeyPair, signBytes, toHex, verifyBytes } from './crypto.js';
import type { SignedEnvelope } from './schemas.js';

/** Wraps a document in a signature envelope, signed over its canonical bytes by each key. */
export function signDocument<T>(signed: T, keys: KeyPair[]): SignedEnvelope<T> {
  const envelope: SignedEnvelope<T> = { signed, signatures: [] };
  for (const key of keys) addSignature(envelope, key);
  return envelope;
}

/** Adds one signature (replacing an older one by the same key): threshold signing collects these. */
export function addSignature<T>(envelope: SignedEnvelope<T>, key: KeyPair): SignedEnvelope<T> {
  const sig = toHex(signBytes(canonicalBytes(envelope.signed), key.secretKey));
  envelope.signatures = envelope.signatures.filter((s) => s.keyid !== key.keyId);
  envelope.signatures.push({ keyid: key.keyId, sig });
  return envelope;
}

/** True when `sig` is a valid signature of the canonical form of `signed` by `publicKeyHex`. */
export function verifySignature(
  signed: unknown,
  sigHex: string,
  publicKeyHex: string,
  message?: Uint8Array,
): boolean {
  try {
    return verifyBytes(message ?? canonicalBytes(signed), fromHex(sigHex), fromHex(publicKeyHex));
  } catch {
    return false;
  }
}
