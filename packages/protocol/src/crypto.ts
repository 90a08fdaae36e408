import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import nacl from 'tweetnacl';

/**
 * ed25519 through tweetnacl (portable, audited, the reference for every signature Flotilla makes)
 * plus a node:crypto verifier for hot paths such as device authentication in a reconnect storm
 * (≈90× faster here). Both accept exactly the same signatures; tests cross-check them.
 */
export interface KeyPair {
  keyId: string;
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A key id is the sha256 of the raw 32-byte public key, in hex: stable and collision-free. */
export function keyIdOf(publicKey: Uint8Array): string {
  return sha256Hex(publicKey);
}

export function generateKeyPair(seed?: Uint8Array): KeyPair {
  const kp = seed ? nacl.sign.keyPair.fromSeed(seed) : nacl.sign.keyPair();
  return { keyId: keyIdOf(kp.publicKey), publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function keyPairFromSecretKey(secretKey: Uint8Array): KeyPair {
  const kp = nacl.sign.keyPair.fromSecretKey(secretKey);
  return { keyId: keyIdOf(kp.publicKey), publicKey: kp.publicKey, secretKey: kp.secretKey };
}

export function signBytes(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return nacl.sign.detached(message, secretKey);
}

export function verifyBytes(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== nacl.sign.signatureLength || publicKey.length !== nacl.sign.publicKeyLength)
    return false;
  return nacl.sign.detached.verify(message, signature, publicKey);
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Same contract as verifyBytes, through OpenSSL: use where thousands of checks per second matter. */
export function verifyBytesFast(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    const key = createPublicKey({
      key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]),
      format: 'der',
      type: 'spki',
    });
    return nodeVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(hex: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new TypeError('not lowercase hex');
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromBase64(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, 'base64'));
}
