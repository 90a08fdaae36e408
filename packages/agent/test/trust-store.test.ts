import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRoot, generateKeyPair, isoAfter, type KeyPair, signDocument } from '@flotilla/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { FileTrustStore, HttpRootSource } from '../src/index.js';
import { MemoryFetcher } from '../src/testing.js';

const NOW = new Date();
let dir: string;
afterEach(async () => rm(dir, { recursive: true, force: true }));

/** Roots 1..n: each signed by its predecessor's root key and its own; expiry (days from now) per version. */
function chain(expiresDays: number[]) {
  const rootKeys: KeyPair[] = expiresDays.map(() => generateKeyPair());
  const online = generateKeyPair();
  return expiresDays.map((days, i) =>
    signDocument(
      buildRoot({
        version: i + 1,
        expires: isoAfter(NOW, days),
        roles: {
          root: { keys: [rootKeys[i]!], threshold: 1 },
          release: { keys: [online], threshold: 1 },
          delta: { keys: [online], threshold: 1 },
          recovery: { keys: [online], threshold: 1 },
        },
      }),
      i === 0 ? [rootKeys[0]!] : [rootKeys[i - 1]!, rootKeys[i]!],
    ),
  );
}

async function storeWith(root1: unknown): Promise<FileTrustStore> {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-trust-'));
  await writeFile(join(dir, 'root.json'), JSON.stringify(root1));
  return new FileTrustStore(dir);
}

function serverWith(roots: unknown[]): HttpRootSource {
  const fetcher = new MemoryFetcher();
  for (const r of roots)
    fetcher.put(
      `http://server/api/v1/trust/root/${(r as { signed: { version: number } }).signed.version}.json`,
      Buffer.from(JSON.stringify(r)),
    );
  return new HttpRootSource('http://server/api/v1/trust/root', fetcher);
}

const version = async () => JSON.parse(await readFile(join(dir, 'root.json'), 'utf8')).signed.version;

describe('device trust store (TUF root update)', () => {
  it('a device offline past its root expiry rotates: expired root.json + valid root.2.json loads root 2', async () => {
    const roots = chain([-10, 365]);
    const store = await storeWith(roots[0]);
    await writeFile(join(dir, 'root.2.json'), JSON.stringify(roots[1]));
    expect((await store.load(NOW)).version).toBe(2);
    expect(await version()).toBe(2);
  });

  it('fetches root 2, 3 from the server until it has none, with expired intermediate roots, and keeps the last', async () => {
    const roots = chain([-20, -10, 365]);
    const store = await storeWith(roots[0]);
    expect((await store.update(NOW, serverWith(roots.slice(1)))).version).toBe(3);
    expect(await version()).toBe(3);
  });

  it('refuses to end on an expired final root (freeze attack): FLOTILLA_ERR_EXPIRED', async () => {
    const roots = chain([-20, -10]);
    const store = await storeWith(roots[0]);
    await expect(store.update(NOW, serverWith(roots.slice(1)))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_EXPIRED',
    });
  });

  it('refuses a served root not signed by the old root key (root takeover) and keeps the trusted one', async () => {
    const roots = chain([365]);
    const forged = chain([365, 365])[1];
    const store = await storeWith(roots[0]);
    await expect(store.update(NOW, serverWith([forged]))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_ROOT_ROTATION',
    });
    expect(await version()).toBe(1);
  });

  it('refuses a served root that skips a version (rollback/replay of the chain)', async () => {
    const roots = chain([365, 365, 365]);
    const store = await storeWith(roots[0]);
    const fetcher = new MemoryFetcher();
    fetcher.put('http://server/r/2.json', Buffer.from(JSON.stringify(roots[2])));
    await expect(store.update(NOW, new HttpRootSource('http://server/r', fetcher))).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_ROOT_VERSION',
    });
  });
});
