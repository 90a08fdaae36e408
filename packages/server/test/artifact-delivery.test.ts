import { afterEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { connectFleet, firstOffered, SimDevice, testImage, uploadRelease } from './fleet.js';
import { auth, cleanupDirs, endClients, startTestServer } from './helpers.js';

/** Who sends artifact bytes: the server itself (the embedded default) or nginx (docs/cluster.md). */
let server: RunningServer | undefined;
let fleet: SimDevice[] = [];
afterEach(async () => {
  await endClients(fleet.map((d) => d.client));
  fleet = [];
  await server?.close();
  server = undefined;
  cleanupDirs();
});

describe('artifact delivery', () => {
  it('streams the bytes itself without artifactAccelRedirect, even to a request that claims to come from nginx', async () => {
    server = await startTestServer();
    const image = testImage(0, 256 * 1024);
    const v1 = await uploadRelease(server, '1.0.0', image);
    const res = await server.app.inject({
      method: 'GET',
      url: `/api/v1/artifacts/${v1.image.sha256}`,
      headers: { ...auth(), 'x-flotilla-accel': '1', range: 'bytes=100-' },
    });
    expect(res.statusCode).toBe(206);
    expect(res.headers['x-accel-redirect']).toBeUndefined();
    expect(res.rawPayload.equals(image.subarray(100))).toBe(true);
  });

  it('sends devices to the artifact base URL in offers while the trust root stays on the public URL', async () => {
    server = await startTestServer({
      publicUrl: 'https://api.example.test',
      artifactBaseUrl: 'https://dl.example.test:8443/',
      artifactAccelRedirect: '/_flotilla/artifacts/',
      limits: { rolloutTickMs: 200 },
    });
    const v1 = await uploadRelease(server, '1.0.0', testImage(0, 256 * 1024));
    const v2 = await uploadRelease(server, '1.1.0', testImage(1, 256 * 1024));
    fleet = SimDevice.fleet('TEST-ONLY-dl', 1, '1.0.0', v1.image.sha256);
    await connectFleet(server, fleet);
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/rollouts',
      headers: auth(),
      payload: { release: '1.1.0', policy: { target: {}, phases: [{ percent: 100 }] } },
    });
    expect(res.statusCode, res.body).toBe(201);
    const { cmd } = await firstOffered(fleet);
    const url = new URL(cmd.offer.signed.full.url);
    expect(url.origin).toBe('https://dl.example.test:8443');
    expect(url.pathname).toBe(`/api/v1/artifacts/${v2.image.sha256}`);
    expect(cmd.rootUrl).toBe('https://api.example.test/api/v1/trust/root');
    // What nginx forwards: the signed path and query as they are, with its X-Flotilla-Accel header.
    const signed = await server.app.inject({
      method: 'GET',
      url: `/api/v1/artifacts/${v2.image.sha256}${url.search}`,
      headers: { 'x-flotilla-accel': '1' },
    });
    expect(signed.statusCode).toBe(200);
    expect(signed.headers['x-accel-redirect']).toBe(
      `/_flotilla/artifacts/${v2.image.sha256.slice(0, 2)}/${v2.image.sha256}`,
    );
    expect(signed.rawPayload.length).toBe(0);
  });

  for (const [name, opts] of [
    ['an artifact base URL that is not http(s)', { artifactBaseUrl: 'ftp://dl.example.test' }],
    ['an artifact base URL with a query', { artifactBaseUrl: 'https://dl.example.test/?a=1' }],
    [
      'an artifact base URL with a path (the signed path is /api/v1/…)',
      { artifactBaseUrl: 'https://dl.example.test/fw' },
    ],
    ['an X-Accel-Redirect prefix without its slashes', { artifactAccelRedirect: '_flotilla/artifacts' }],
    ['an X-Accel-Redirect prefix that climbs out (..)', { artifactAccelRedirect: '/_flotilla/../keys/' }],
  ] as const)
    it(`refuses to start on ${name} with FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG`, async () => {
      await expect(startTestServer(opts)).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG',
      });
    });
});
