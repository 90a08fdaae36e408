import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addSignature,
  buildRoot,
  canonicalize,
  checkInstallable,
  generateKeyPair,
  isoAfter,
  parseCanonical,
  parseJson,
  SCHEMA_VERSION,
  sha256Hex,
  signDocument,
  verifyDeltaDescriptor,
  verifyInitialRoot,
  verifyOffer,
  verifyRelease,
  verifyRootChain,
  verifyRootRotation,
} from '../src/index.js';
import { makeKeys, makeManifest, NOW, signedRelease } from './fixtures.js';

const code = (c: string) => expect.objectContaining({ code: c });

describe('release manifest attacks', () => {
  const keys = makeKeys();

  it('accepts a manifest signed by the release key', () => {
    expect(verifyRelease(signedRelease(keys), keys.rootMeta, NOW).version).toBe('1.1.0');
  });

  it('rejects a tampered manifest', () => {
    const env = signedRelease(keys);
    env.signed.version = '9.9.9';
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_SIGNATURE_INVALID'));
  });

  it('rejects an unsigned manifest', () => {
    const env = signDocument(makeManifest(), []);
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_SIGNATURE_MISSING'));
    expect(() => verifyRelease(makeManifest(), keys.rootMeta, NOW)).toThrow(
      code('FLOTILLA_ERR_SIGNATURE_MISSING'),
    );
  });

  it('rejects a signature by an unknown key', () => {
    const env = signedRelease(keys, {}, generateKeyPair());
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_KEY_UNKNOWN'));
  });

  it('rejects a signature by a key of the wrong role (delta key signing a release)', () => {
    const env = signedRelease(keys, {}, keys.delta);
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_KEY_WRONG_ROLE'));
  });

  it('rejects a recovery image signed by the release key, and a recovery image where only releases are allowed', () => {
    const byReleaseKey = signedRelease(keys, { kind: 'recovery' });
    expect(() => verifyRelease(byReleaseKey, keys.rootMeta, NOW, { allowKinds: ['recovery'] })).toThrow(
      code('FLOTILLA_ERR_KEY_WRONG_ROLE'),
    );
    const recovery = signedRelease(keys, { kind: 'recovery' }, keys.recovery);
    expect(verifyRelease(recovery, keys.rootMeta, NOW, { allowKinds: ['recovery'] }).kind).toBe('recovery');
    expect(() => verifyRelease(recovery, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_KEY_WRONG_ROLE'));
  });

  /** A root whose release role needs 2 signatures: the usual release key and `second`. */
  const twoReleaseKeysRoot = (second: ReturnType<typeof generateKeyPair>) =>
    buildRoot({
      version: 1,
      expires: isoAfter(NOW, 10),
      roles: {
        root: { keys: keys.root, threshold: 2 },
        release: { keys: [keys.release, second], threshold: 2 },
        delta: { keys: [keys.delta], threshold: 1 },
        recovery: { keys: [keys.recovery], threshold: 1 },
      },
    });

  it('rejects a manifest below the role threshold', () => {
    const second = generateKeyPair();
    const root = twoReleaseKeysRoot(second);
    const env = signedRelease(keys);
    expect(() => verifyRelease(env, root, NOW)).toThrow(code('FLOTILLA_ERR_THRESHOLD'));
    addSignature(env, second);
    expect(verifyRelease(env, root, NOW).name).toBe('demo-os');
  });

  it('does not count the same key twice toward a threshold', () => {
    const second = generateKeyPair();
    const root = twoReleaseKeysRoot(second);
    const env = signedRelease(keys);
    env.signatures.push({ ...env.signatures[0]! });
    expect(() => verifyRelease(env, root, NOW)).toThrow(code('FLOTILLA_ERR_THRESHOLD'));
  });

  it('rejects expired metadata (freeze attack)', () => {
    const env = signedRelease(keys, { expires: '2026-05-31T00:00:00Z' });
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_EXPIRED'));
  });

  it('rejects a securityVersion downgrade', () => {
    const m = verifyRelease(signedRelease(keys, { securityVersion: 2 }), keys.rootMeta, NOW);
    expect(() => checkInstallable(m, { hardware: 'sim-board-v1', securityVersion: 3 })).toThrow(
      code('FLOTILLA_ERR_DOWNGRADE'),
    );
    expect(() => checkInstallable(m, { hardware: 'sim-board-v1', securityVersion: 2 })).not.toThrow();
  });

  it('rejects incompatible hardware', () => {
    const m = verifyRelease(signedRelease(keys), keys.rootMeta, NOW);
    expect(() => checkInstallable(m, { hardware: 'other-board', securityVersion: 0 })).toThrow(
      code('FLOTILLA_ERR_INCOMPATIBLE_HARDWARE'),
    );
  });

  it('rejects chunk hashes that do not cover the image', () => {
    const m = makeManifest();
    const env = signDocument({ ...m, image: { ...m.image, chunkHashes: [m.image.chunkHashes[0]!] } }, [
      keys.release,
    ]);
    expect(() => verifyRelease(env, keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_SCHEMA'));
  });

  it('rejects a valid signature carried on an altered, non-canonical text (duplicate key)', () => {
    const env = signedRelease(keys);
    const text = canonicalize(env).replace('"version":"1.1.0"', '"version":"1.1.0","version":"6.6.6"');
    expect(() => verifyRelease(parseJson(text), keys.rootMeta, NOW)).toThrow(
      code('FLOTILLA_ERR_JSON_DUPLICATE_KEY'),
    );
  });

  it('rejects a valid signature carried on an altered canonical form (same value, other text)', () => {
    const text = canonicalize(signedRelease(keys));
    expect(verifyRelease(parseCanonical(text), keys.rootMeta, NOW).securityVersion).toBe(3);
    const variants = [
      text.replace('"securityVersion":3', '"securityVersion":3.0'),
      text.replace('"securityVersion":3', '"securityVersion":3e0'),
      text.replace('"name":"demo-os"', '"name":"demo\\u002dos"'),
      text.replace('{"signatures"', '{ "signatures"'),
    ];
    for (const variant of variants) {
      expect(variant).not.toBe(text);
      expect(() => parseCanonical(variant)).toThrow(code('FLOTILLA_ERR_NOT_CANONICAL'));
    }
  });

  it('rejects a fractional number inside a signed document', () => {
    const frac = canonicalize(signedRelease(keys)).replace('"securityVersion":3', '"securityVersion":3.5');
    expect(() => verifyRelease(parseJson(frac), keys.rootMeta, NOW)).toThrow(code('FLOTILLA_ERR_SCHEMA'));
  });

  it('rejects any single-byte change of a signed document', () => {
    const text = canonicalize(signedRelease(keys));
    const bytes = new TextEncoder().encode(text);
    fc.assert(
      fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (pos, delta) => {
        const mutated = bytes.slice();
        mutated[pos] = (mutated[pos]! + delta) & 0xff;
        expect(() => verifyRelease(parseCanonical(mutated), keys.rootMeta, NOW)).toThrow(
          expect.objectContaining({ code: expect.stringMatching(/^FLOTILLA_ERR_/) }),
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe('root metadata and rotation', () => {
  it('accepts a self-signed initial root at its threshold', () => {
    const keys = makeKeys();
    const env = signDocument(keys.rootMeta, keys.root.slice(0, 2));
    expect(verifyInitialRoot(env, NOW).version).toBe(1);
    expect(() => verifyInitialRoot(signDocument(keys.rootMeta, keys.root.slice(0, 1)), NOW)).toThrow(
      code('FLOTILLA_ERR_THRESHOLD'),
    );
  });

  it('rejects an expired root', () => {
    const keys = makeKeys({ expiresDays: -1 });
    expect(() => verifyInitialRoot(signDocument(keys.rootMeta, keys.root), NOW)).toThrow(
      code('FLOTILLA_ERR_EXPIRED'),
    );
  });

  it('rejects a key id that is not the hash of its key (one key posing as two)', () => {
    const keys = makeKeys();
    const meta = structuredClone(keys.rootMeta);
    const [firstId] = Object.keys(meta.keys);
    meta.keys['0'.repeat(64)] = meta.keys[firstId!]!;
    expect(() => verifyInitialRoot(signDocument(meta, keys.root), NOW)).toThrow(code('FLOTILLA_ERR_SCHEMA'));
  });

  const rotated = (_old: ReturnType<typeof makeKeys>) => makeKeys({ version: 2 });

  it('accepts a rotation signed by a threshold of the old and of the new root keys', () => {
    const old = makeKeys();
    const next = rotated(old);
    const env = signDocument(next.rootMeta, [...old.root.slice(0, 2), ...next.root.slice(0, 2)]);
    expect(verifyRootRotation(old.rootMeta, env, NOW).version).toBe(2);
  });

  it('rejects a root rotation signed only by new keys', () => {
    const old = makeKeys();
    const next = rotated(old);
    const env = signDocument(next.rootMeta, next.root);
    expect(() => verifyRootRotation(old.rootMeta, env, NOW)).toThrow(code('FLOTILLA_ERR_ROOT_ROTATION'));
  });

  it('rejects a root rotation signed only by old keys', () => {
    const old = makeKeys();
    const next = rotated(old);
    const env = signDocument(next.rootMeta, old.root);
    expect(() => verifyRootRotation(old.rootMeta, env, NOW)).toThrow(code('FLOTILLA_ERR_ROOT_ROTATION'));
  });

  it('rejects a rotation that skips or repeats a version', () => {
    const old = makeKeys();
    for (const version of [1, 3]) {
      const next = makeKeys({ version });
      const env = signDocument(next.rootMeta, [...old.root, ...next.root]);
      expect(() => verifyRootRotation(old.rootMeta, env, NOW)).toThrow(code('FLOTILLA_ERR_ROOT_VERSION'));
    }
  });
});

describe('root chain (TUF: expiry only on the final root)', () => {
  /** Roots 1..n, each signed by the previous root's keys and its own; expiry per version. */
  const chain = (expiresDays: number[]) => {
    const sets = expiresDays.map((d, i) => makeKeys({ version: i + 1, expiresDays: d }));
    const envs = sets.map((k, i) =>
      signDocument(k.rootMeta, [...(i > 0 ? sets[i - 1]!.root : []), ...k.root]),
    );
    return { sets, envs };
  };

  it('a device offline past its root expiry rotates: expired root.json + valid root 2 gives root 2', () => {
    const { envs } = chain([-30, 365]);
    expect(verifyRootChain(envs[0], envs.slice(1), NOW).version).toBe(2);
  });

  it('does not check expiry of intermediate roots (1 expired, 2 expired, 3 valid)', () => {
    const { envs } = chain([-60, -30, 365]);
    expect(verifyRootChain(envs[0], envs.slice(1), NOW).version).toBe(3);
  });

  it('refuses a chain whose final root expired (freeze attack)', () => {
    const { envs } = chain([-60, -1]);
    expect(() => verifyRootChain(envs[0], envs.slice(1), NOW)).toThrow(code('FLOTILLA_ERR_EXPIRED'));
    expect(() => verifyRootChain(envs[0], [], NOW)).toThrow(code('FLOTILLA_ERR_EXPIRED'));
  });

  it('refuses a chain with a skipped version or a link not signed by the old keys', () => {
    const { envs, sets } = chain([365, 365, 365]);
    expect(() => verifyRootChain(envs[0], [envs[2]], NOW)).toThrow(code('FLOTILLA_ERR_ROOT_VERSION'));
    const selfOnly = signDocument(sets[1]!.rootMeta, sets[1]!.root);
    expect(() => verifyRootChain(envs[0], [selfOnly], NOW)).toThrow(code('FLOTILLA_ERR_ROOT_ROTATION'));
  });
});

describe('offers and deltas', () => {
  const keys = makeKeys();
  const activeSha = sha256Hex('active image');
  const release = signedRelease(keys);
  const descriptor = (from = activeSha, expires = isoAfter(NOW, 1)) =>
    signDocument(
      {
        _type: 'delta' as const,
        schemaVersion: SCHEMA_VERSION,
        codec: 'flotilla-delta-1',
        fromImageSha256: from,
        toImageSha256: release.signed.image.sha256,
        deltaSha256: sha256Hex('delta'),
        deltaSize: 10,
        fromVersion: '1.0.0',
        toVersion: '1.1.0',
        expires,
      },
      [keys.delta],
    );
  const offer = (over: Record<string, unknown> = {}, signer = keys.delta) =>
    signDocument(
      {
        _type: 'offer' as const,
        schemaVersion: SCHEMA_VERSION,
        deploymentId: 'd1',
        deviceId: 'dev-1',
        issued: '2026-06-01T11:59:00Z',
        expires: '2026-06-01T13:00:00Z',
        release,
        full: {
          url: 'http://127.0.0.1/a',
          size: release.signed.image.size,
          sha256: release.signed.image.sha256,
        },
        delta: { url: 'http://127.0.0.1/d', descriptor: descriptor() },
        ...over,
      },
      [signer],
    );
  const ctx = {
    root: keys.rootMeta,
    now: NOW,
    deviceId: 'dev-1',
    device: { hardware: 'sim-board-v1', securityVersion: 1 },
    activeImageSha256: activeSha,
  };

  it('accepts a well-formed offer with a delta from the active image', () => {
    const v = verifyOffer(offer(), ctx);
    expect(v.delta?.fromVersion).toBe('1.0.0');
  });

  it('rejects an expired offer', () => {
    expect(() => verifyOffer(offer({ expires: '2026-06-01T11:00:00Z' }), ctx)).toThrow(
      code('FLOTILLA_ERR_EXPIRED'),
    );
  });

  it('rejects an offer signed by the release key instead of the online role', () => {
    expect(() => verifyOffer(offer({}, keys.release), ctx)).toThrow(code('FLOTILLA_ERR_KEY_WRONG_ROLE'));
  });

  it('rejects an offer addressed to another device', () => {
    expect(() => verifyOffer(offer({ deviceId: 'dev-2' }), ctx)).toThrow(
      code('FLOTILLA_ERR_WRONG_DOCUMENT_TYPE'),
    );
  });

  it('rejects a delta whose base is not the active slot', () => {
    const o = offer({
      delta: { url: 'http://127.0.0.1/d', descriptor: descriptor(sha256Hex('other base')) },
    });
    expect(() => verifyOffer(o, ctx)).toThrow(code('FLOTILLA_ERR_DELTA_BASE_MISMATCH'));
  });

  it('rejects an expired delta descriptor', () => {
    expect(() =>
      verifyDeltaDescriptor(descriptor(activeSha, '2026-01-01T00:00:00Z'), keys.rootMeta, NOW),
    ).toThrow(code('FLOTILLA_ERR_EXPIRED'));
  });

  it('rejects a release document passed where an offer is expected', () => {
    expect(() => verifyOffer(release, ctx)).toThrow(code('FLOTILLA_ERR_WRONG_DOCUMENT_TYPE'));
  });
});
