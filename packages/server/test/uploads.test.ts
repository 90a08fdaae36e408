import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { TrustSet } from '@flotilla/protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REFUSED_UPLOAD_LINGER } from '../src/api/routes/releases.js';
import { nodeArtifactFs } from '../src/artifacts/artifact-fs.js';
import type { RunningServer } from '../src/index.js';
import { makeBundle, writeTrustDir } from './bundles.js';
import { testImage } from './fleet.js';
import { auth, cleanupDirs, startTestServer, tempDir, waitFor } from './helpers.js';

// Release uploads as an attacker, a full disk and a busy server see them (issue 13, items 1, 6,
// 12): names that climb out of the data directory, bytes that must be refused as they arrive,
// bounds on uploads at once and their temporary space, and a disk that fills up.

const MiB = 1024 * 1024;
let trust: TrustSet;
let keysDir: string;
let work: string;
let bundle: string;
let bundleBytes: Buffer;
const servers: RunningServer[] = [];

beforeAll(async () => {
  keysDir = tempDir('flotilla-upload-keys-');
  trust = writeTrustDir(keysDir);
  work = tempDir('flotilla-upload-work-');
  bundle = await makeBundle(work, trust, { version: '2.0.0', image: testImage(1) });
  bundleBytes = readFileSync(bundle);
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => cleanupDirs());

async function server(opts: Parameters<typeof startTestServer>[0] = {}): Promise<RunningServer> {
  const s = await startTestServer({ mqttPort: null, importKeysFrom: keysDir, ...opts });
  servers.push(s);
  return s;
}

/** An upload body pulled on demand that counts how much of it the server ever asked for. */
function counted(prefix: Buffer, fillerBytes: number): { body: Readable; pulled: () => number } {
  let pulled = 0;
  const chunk = Buffer.alloc(64 * 1024);
  const body = Readable.from(
    (function* () {
      pulled += prefix.length;
      yield prefix;
      for (let sent = 0; sent < fillerBytes; sent += chunk.length) {
        pulled += chunk.length;
        yield chunk;
      }
    })(),
  );
  return { body, pulled: () => pulled };
}

function post(s: RunningServer, url: string, payload: Buffer | Readable) {
  return s.app.inject({
    method: 'POST',
    url,
    headers: { ...auth(), 'content-type': 'application/octet-stream' },
    payload,
  });
}

const buildUrl = (q: Record<string, string>) =>
  `/api/v1/releases/build?${new URLSearchParams({
    name: 'TEST-ONLY-os',
    version: '3.0.1',
    securityVersion: '1',
    compatible: 'TEST-ONLY-board',
    format: 'raw',
    partitionSize: String(512 * 1024),
    input: 'image',
    ...q,
  })}`;

function tmpFiles(s: RunningServer): string[] {
  return readdirSync(join(s.ctx.artifacts.dir, 'tmp'));
}

describe('release names and versions (path traversal)', () => {
  it('refuses a release name that climbs out of the data directory (path traversal)', async () => {
    const parent = tempDir('flotilla-upload-escape-');
    const s = await server({ dataDir: join(parent, 'data') });
    // data/artifacts/tmp/build-X/out/ + five ".." lands in `parent`.
    const res = await post(s, buildUrl({ name: '../../../../../TEST-ONLY-escape' }), testImage(2));
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_VALIDATION');
    expect(readdirSync(parent)).toEqual(['data']);
    expect(await s.ctx.store.releases.list()).toEqual([]);
  });

  it.each([
    ['a/b'],
    ['..'],
    ['.hidden'],
    ['with space'],
    ['x'.repeat(65)],
  ])('refuses the release name %j at the API', async (name) => {
    const s = await server();
    const res = await post(s, buildUrl({ name }), testImage(2));
    expect(res.statusCode, res.body).toBe(400);
  });

  it('refuses versions outside the grammar in paths and queries', async () => {
    const s = await server();
    const build = await post(s, buildUrl({ version: '1.0.0/../../x' }), testImage(2));
    expect(build.statusCode).toBe(400);
    for (const v of ['1.0', '01.0.0', '1.0.0_x', '1.0.0+a/b'])
      expect(
        (await s.app.inject({ url: `/api/v1/releases/${encodeURIComponent(v)}`, headers: auth() }))
          .statusCode,
      ).toBe(400);
  });
});

describe('bundle uploads are checked as the bytes arrive', () => {
  it('stores a valid bundle streamed in and answers 201 (then 200 for the same bundle)', async () => {
    const s = await server();
    const res = await post(s, '/api/v1/releases/bundle', bundleBytes);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ version: '2.0.0', name: 'TEST-ONLY-os', channels: ['dev'] });
    expect(s.ctx.artifacts.has((await s.ctx.store.releases.get('2.0.0'))!.imageSha256)).toBe(true);
    expect((await post(s, '/api/v1/releases/bundle', bundleBytes)).statusCode).toBe(200);
    expect(tmpFiles(s)).toEqual([]);
  });

  it('stops reading an upload that is not a bundle at the magic (256 MiB of zeros are never written)', async () => {
    const s = await server();
    const upload = counted(Buffer.alloc(0), 256 * MiB);
    const res = await post(s, '/api/v1/releases/bundle', upload.body);
    upload.body.destroy();
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'FLOTILLA_ERR_SERVER_UPLOAD_INVALID' });
    expect(res.json().error.message).toContain('NOT_A_BUNDLE');
    expect(upload.pulled()).toBeLessThan(4 * MiB + REFUSED_UPLOAD_LINGER.bytes);
    expect(tmpFiles(s)).toEqual([]);
  });

  it('stops at the manifest signature: a bundle signed by an unknown key is refused before its image is read', async () => {
    const s = await server();
    const stranger = writeTrustDir(tempDir('flotilla-upload-stranger-'));
    const forged = readFileSync(
      await makeBundle(tempDir('flotilla-upload-forged-'), stranger, {
        version: '2.0.1',
        image: testImage(3),
      }),
    );
    const headerEnd = 10 + forged.readUInt32BE(6);
    const upload = counted(forged.subarray(0, headerEnd), 256 * MiB);
    const res = await post(s, '/api/v1/releases/bundle', upload.body);
    upload.body.destroy();
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_RELEASE_INVALID');
    expect(upload.pulled()).toBeLessThan(headerEnd + 4 * MiB + REFUSED_UPLOAD_LINGER.bytes);
    expect(await s.ctx.store.releases.list()).toEqual([]);
    expect(tmpFiles(s)).toEqual([]);
  });

  it('stops a build upload whose first bytes are not what input= declares (not gzip)', async () => {
    const s = await server();
    const upload = counted(Buffer.from('TEST-ONLY not gzip'), 256 * MiB);
    const res = await post(s, buildUrl({ input: 'tar.gz', format: 'ext4' }), upload.body);
    upload.body.destroy();
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_UPLOAD_INVALID');
    expect(upload.pulled()).toBeLessThan(4 * MiB + REFUSED_UPLOAD_LINGER.bytes);
  });
});

describe('uploads are bounded as a whole', () => {
  it('refuses an upload past limits.maxConcurrentUploads with 503 without reading it', async () => {
    const s = await server({ limits: { maxConcurrentUploads: 2 } });
    const stalled = [new PassThrough(), new PassThrough()];
    const running = stalled.map((body) => post(s, '/api/v1/releases/bundle', body));
    await waitFor(() => s.ctx.releases.uploadsInFlight === 2, 10_000, 'two uploads running');
    const third = await post(s, '/api/v1/releases/bundle', bundleBytes);
    expect(third.statusCode, third.body).toBe(503);
    expect(third.json().error.code).toBe('FLOTILLA_ERR_SERVER_UPLOADS_BUSY');
    for (const body of stalled) body.end(Buffer.from('TEST-ONLY not a bundle'));
    expect((await Promise.all(running)).map((r) => r.statusCode)).toEqual([400, 400]);
    // The slots are given back: the same bundle now goes in.
    expect((await post(s, '/api/v1/releases/bundle', bundleBytes)).statusCode).toBe(201);
  });

  it('refuses an upload that would pass limits.maxUploadTempBytes with 507', async () => {
    const s = await server({ limits: { maxUploadTempBytes: 256 * 1024 } });
    const res = await post(s, '/api/v1/releases/bundle', bundleBytes);
    expect(res.statusCode, res.body).toBe(507);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_UPLOAD_SPACE');
    // A build claims its partition image up front.
    const build = await post(s, buildUrl({ partitionSize: String(1024 * 1024) }), testImage(2));
    expect(build.statusCode, build.body).toBe(507);
    expect(tmpFiles(s)).toEqual([]);
    expect(await s.ctx.store.releases.list()).toEqual([]);
  });

  it('refuses a declared Content-Length over limits.maxUploadBytes before reading (413)', async () => {
    const s = await server({ limits: { maxUploadBytes: 1024 } });
    const res = await post(s, '/api/v1/releases/bundle', bundleBytes);
    expect(res.statusCode, res.body).toBe(413);
    expect(res.json().error.code).toBe('FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE');
  });
});

describe('a full disk (ENOSPC from /dev/full)', () => {
  it('answers an upload with 507 FLOTILLA_ERR_SERVER_STORAGE_FULL and fails /healthz until space is back', async () => {
    let full = false;
    // The kernel's own ENOSPC: /dev/full refuses every write with it.
    const artifactFs = {
      createWriteStream: (path: string) =>
        full ? createWriteStream('/dev/full', { flags: 'w' }) : nodeArtifactFs.createWriteStream(path),
    };
    const s = await server({ artifactFs });
    expect((await s.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    full = true;

    const res = await post(s, '/api/v1/releases/bundle', bundleBytes);
    expect(res.statusCode, res.body).toBe(507);
    expect(res.json().error).toMatchObject({
      code: 'FLOTILLA_ERR_SERVER_STORAGE_FULL',
      hint: expect.any(String),
    });
    const build = await post(s, buildUrl({}), testImage(2));
    expect(build.statusCode, build.body).toBe(507);
    expect(build.json().error.code).toBe('FLOTILLA_ERR_SERVER_STORAGE_FULL');
    expect(await s.ctx.store.releases.list()).toEqual([]);

    const health = await s.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ ok: false, error: { code: 'FLOTILLA_ERR_SERVER_STORAGE_FULL' } });

    full = false;
    expect((await s.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await post(s, '/api/v1/releases/bundle', bundleBytes)).statusCode).toBe(201);
    expect(existsSync(join(s.ctx.artifacts.dir, 'tmp'))).toBe(true);
    expect(tmpFiles(s)).toEqual([]);
  });
});
