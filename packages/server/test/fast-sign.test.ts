import { generateKeyPair, signDocument, toHex, verifySignature } from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';
import { signDocumentFast } from '../src/keys/fast-sign.js';

describe('offer signing through node:crypto', () => {
  it('gives byte-identical envelopes to protocol signDocument (tweetnacl) for many keys and documents', () => {
    for (let i = 0; i < 20; i++) {
      const key = generateKeyPair();
      const doc = { _type: 'offer', n: i, text: 'TEST-ONLY ü€', nested: { list: [i, 'x', null], z: true } };
      expect(signDocumentFast(doc, key)).toEqual(signDocument(doc, [key]));
    }
  });

  it('verifies with protocol (tweetnacl) and no longer matches another key or a changed document', () => {
    const [a, b] = [generateKeyPair(), generateKeyPair()];
    const env = signDocumentFast({ v: 1 }, a);
    expect(verifySignature({ v: 1 }, env.signatures[0]!.sig, toHex(a.publicKey))).toBe(true);
    expect(verifySignature({ v: 2 }, env.signatures[0]!.sig, toHex(a.publicKey))).toBe(false);
    expect(env.signatures[0]!.sig).not.toBe(signDocumentFast({ v: 1 }, b).signatures[0]!.sig);
    expect(env.signatures[0]!.sig).not.toBe(signDocumentFast({ v: 2 }, a).signatures[0]!.sig);
  });
});
