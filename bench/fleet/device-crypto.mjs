// Simulated boards' ed25519 on OpenSSL (bench worker processes only).
//
// The agent signs its MQTT password on every connect and verifies offers, releases and delta
// descriptors with protocol's tweetnacl code: ~100 operations/s on one core here. A real board
// spends that on its own CPU; 19,000 boards simulated on 2 cores cannot (190 CPU-seconds per
// reconnect storm), and the benchmark would measure the simulator instead of the server.
// Ed25519 is deterministic (RFC 8032), so node:crypto gives byte-identical signatures; this swaps
// tweetnacl's sign/verify/keyPair for node:crypto in this process only, after cross-checking
// them against tweetnacl on fresh keys. The agent code runs unchanged; the server is untouched.
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { createRequire } from 'node:module';

const PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * A tweetnacl-shaped ed25519 key pair made by OpenSSL. From a random seed through DER, not
 * generateKeyPairSync + JWK export: on Node 20 that pair deadlocks in GC (a KeyGenJob destructor
 * waits on the mutex ExportJWK holds) over many keys.
 */
export function fastKeyPair() {
  const seed = randomBytes(32);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKey = new Uint8Array(spki.subarray(spki.length - 32));
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(publicKey, 32);
  return { publicKey, secretKey };
}

export function installFastDeviceCrypto() {
  // The very tweetnacl instance @flotilla/protocol imports (one CommonJS module per real path).
  const require = createRequire(import.meta.resolve('@flotilla/protocol'));
  const nacl = require('tweetnacl');
  if (nacl.sign.detached.fastDeviceCrypto) return;
  const orig = {
    detached: nacl.sign.detached,
    verify: nacl.sign.detached.verify,
    keyPair: nacl.sign.keyPair,
  };
  const privs = new WeakMap();
  const pubs = new Map();
  const priv = (sk) => {
    let k = privs.get(sk);
    if (!k) {
      k = createPrivateKey({ key: Buffer.concat([PKCS8, sk.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
      privs.set(sk, k);
    }
    return k;
  };
  const pub = (pk) => {
    const hex = Buffer.from(pk).toString('hex');
    let k = pubs.get(hex);
    if (!k) {
      k = createPublicKey({ key: Buffer.concat([SPKI, pk]), format: 'der', type: 'spki' });
      if (pubs.size > 100_000) pubs.clear();
      pubs.set(hex, k);
    }
    return k;
  };
  const detached = (msg, sk) => {
    if (sk?.length !== 64) return orig.detached(msg, sk); // tweetnacl's own errors
    return new Uint8Array(sign(null, msg, priv(sk)));
  };
  detached.verify = (msg, sig, pk) => {
    if (sig?.length !== 64 || pk?.length !== 32) return orig.verify(msg, sig, pk);
    try {
      return verify(null, msg, pub(pk), sig);
    } catch {
      return false;
    }
  };
  const keyPair = () => fastKeyPair();
  keyPair.fromSeed = orig.keyPair.fromSeed;
  keyPair.fromSecretKey = orig.keyPair.fromSecretKey;

  // Cross-check before use: same keys, same signatures, same verdicts as tweetnacl.
  for (let i = 0; i < 4; i++) {
    const k = keyPair();
    const again = orig.keyPair.fromSeed(k.secretKey.subarray(0, 32));
    const msg = randomBytes(100 + i);
    const a = orig.detached(msg, again.secretKey);
    const b = detached(msg, k.secretKey);
    const bad = Uint8Array.from(a);
    bad[5] ^= 1;
    if (
      Buffer.compare(Buffer.from(again.publicKey), Buffer.from(k.publicKey)) !== 0 ||
      Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0 ||
      !detached.verify(msg, a, k.publicKey) ||
      detached.verify(msg, bad, k.publicKey) !== orig.verify(msg, bad, k.publicKey)
    )
      throw new Error('node:crypto ed25519 does not match tweetnacl: refusing to swap it in');
  }
  detached.fastDeviceCrypto = true;
  nacl.sign.detached = detached;
  nacl.sign.keyPair = keyPair;
}
