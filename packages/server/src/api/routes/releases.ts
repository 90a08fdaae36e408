import type { Readable } from 'node:stream';
import { HardwareId, ImageFormat, ReleaseName, SemVer } from '@flotilla/protocol';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { ServerError } from '../../errors.js';
import type { Channel as ChannelName } from '../../store/repos/releases.js';
import { actorOf } from '../auth.js';
import { presentRelease } from '../present.js';
import { Channel, VersionParams } from '../schemas.js';
import { OpenObject, OrNull, ReleaseView } from '../views.js';
import { type RoutePlugin, responses } from './plugin.js';

const previousChannel = (channel: ChannelName): ChannelName | null =>
  channel === 'prod' ? 'staging' : channel === 'staging' ? 'dev' : null;

/** The signed release manifest, served as stored (declared fields would be reordered). */
const SignedManifest = OpenObject('the signed release manifest: {signed, signatures}');

const DeltaView = Type.Object({
  from: Type.String({ description: 'sha256 of the source image' }),
  to: Type.String({ description: 'sha256 of the target image' }),
  status: Type.String(),
  sha256: OrNull(Type.String()),
  size: OrNull(Type.Integer()),
  codec: OrNull(Type.String()),
  error: OrNull(Type.String()),
  url: OrNull(Type.String()),
  // Open on purpose: a signed document, served as stored (a schema would drop or reorder its fields).
  descriptor: OrNull(OpenObject('the signed delta descriptor')),
});

const strict = { additionalProperties: false } as const;

/** Upload bodies are streamed to disk, never buffered: the parser hands the raw request stream on. */
export const UPLOAD_TYPES = [
  'application/octet-stream',
  'application/x-tar',
  'application/gzip',
  'application/zstd',
  'application/x-xz',
  'application/vnd.flotilla.bundle',
];

/**
 * The request body as bytes, read by the upload checks. Stopping early must not destroy the
 * request (that would reset the socket before the coded error is sent): `stopOnError` lingers
 * after the answer instead.
 */
function uploadBody(body: unknown): AsyncIterable<Buffer> {
  return (body as Readable).iterator({ destroyOnReturn: false });
}

function declaredLength(headers: Record<string, unknown>): number | undefined {
  const length = Number(headers['content-length']);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/**
 * How much of a refused upload's unread rest is read and dropped (never written) before its
 * connection is cut: enough for a client to read the answer and stop sending.
 */
export const REFUSED_UPLOAD_LINGER = { ms: 5_000, bytes: 64 * 1024 * 1024 } as const;

/**
 * A refused upload is answered at once; the rest of its body is then read and dropped (as nginx's
 * lingering close does) until the client, which has the coded error, stops sending, or up to
 * REFUSED_UPLOAD_LINGER. Closing with unread bytes at once would make the kernel send a reset,
 * which can destroy the answer before the client has read it.
 */
async function stopOnError<T>(reply: FastifyReply, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const req = reply.request.raw;
    reply.raw.once('finish', () => {
      if (req.complete) return;
      let dropped = 0;
      const cut = () => req.destroy();
      const timer = setTimeout(cut, REFUSED_UPLOAD_LINGER.ms);
      timer.unref();
      req.once('close', () => clearTimeout(timer));
      req.on('data', (chunk: Buffer) => {
        dropped += chunk.length;
        if (dropped > REFUSED_UPLOAD_LINGER.bytes) cut();
      });
    });
    throw err;
  }
}

/** Releases (list, upload a bundle, build on the server, promote) and deltas between them. */
export const releaseRoutes: RoutePlugin = async (app, { ctx }) => {
  const existing = async (version: string) => {
    const release = await ctx.store.releases.get(version);
    if (!release) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${version}`);
    return release;
  };

  app.get(
    '/releases',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['releases'],
        summary: 'Releases, optionally only those in one channel',
        querystring: Type.Object({ channel: Type.Optional(Channel) }, strict),
        response: responses({ 200: Type.Object({ items: Type.Array(ReleaseView) }) }),
      },
    },
    async (req) => ({
      items: (await ctx.store.releases.list(req.query.channel)).map((release) => presentRelease(release)),
    }),
  );

  app.get(
    '/releases/:version',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['releases'],
        summary: 'One release with its signed manifest',
        params: VersionParams,
        response: responses({ 200: ReleaseView }),
      },
    },
    async (req) => presentRelease(await existing(req.params.version), true),
  );

  app.get(
    '/releases/:version/manifest',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['releases'],
        summary: 'The signed manifest of a release, as stored',
        params: VersionParams,
        response: responses({ 200: SignedManifest }),
      },
    },
    async (req) => (await existing(req.params.version)).manifest,
  );

  app.post(
    '/releases/bundle',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['releases'],
        summary:
          'Upload a .flot bundle signed elsewhere (verified against the server trust root as it streams in)',
        headers: Type.Object({
          'content-type': Type.String({ pattern: '^application/(octet-stream|vnd\\.flotilla\\.bundle)' }),
        }),
        response: responses({ 200: ReleaseView, 201: ReleaseView }),
      },
    },
    async (req, reply) => {
      const uploaded = await stopOnError(reply, () =>
        ctx.releases.uploadBundle(uploadBody(req.body), actorOf(req), declaredLength(req.headers)),
      );
      return reply.code(uploaded.created ? 201 : 200).send(presentRelease(uploaded.release));
    },
  );

  app.post(
    '/releases/build',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['releases'],
        summary:
          'Upload a rootfs tarball or partition image; the server builds, hashes, writes the SBOM and signs',
        querystring: Type.Object(
          {
            name: ReleaseName,
            version: SemVer,
            securityVersion: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
            compatible: Type.Array(HardwareId, { minItems: 1, maxItems: 256 }),
            format: Type.Optional(ImageFormat),
            partitionSize: Type.Integer({ minimum: 4096, maximum: 64 * 1024 ** 3 }),
            input: Type.Union([
              Type.Literal('tar'),
              Type.Literal('tar.gz'),
              Type.Literal('tar.zst'),
              Type.Literal('tar.xz'),
              Type.Literal('image'),
            ]),
            kind: Type.Optional(Type.Union([Type.Literal('release'), Type.Literal('recovery')])),
            sourceRevision: Type.Optional(Type.String({ maxLength: 200 })),
            expiresDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
          },
          strict,
        ),
        response: responses({ 201: ReleaseView }),
      },
    },
    async (req, reply) => {
      const build = req.query;
      const built = await stopOnError(reply, () =>
        ctx.releases.buildFromUpload(
          uploadBody(req.body),
          { ...build, format: build.format ?? 'ext4' },
          actorOf(req),
          declaredLength(req.headers),
        ),
      );
      return reply.code(201).send(presentRelease(built.release));
    },
  );

  app.post(
    '/releases/:version/promote',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['releases'],
        summary: 'Promote to the next channel (dev → staging → prod)',
        params: VersionParams,
        body: Type.Object(
          { channel: Channel, overrideReason: Type.Optional(Type.String({ minLength: 3, maxLength: 2000 })) },
          strict,
        ),
        response: responses({ 200: ReleaseView }),
      },
    },
    async (req) => {
      const { version } = req.params;
      const { channel, overrideReason } = req.body;
      // Policy gate (issue 17): refuses with FLOTILLA_ERR_POLICY_VIOLATION; then the promotion record.
      const before = await existing(version);
      const gate = await ctx.policy.gatePromotion(
        before,
        channel,
        { actor: actorOf(req), role: req.token?.role ?? 'viewer' },
        overrideReason,
      );
      const promoted = await ctx.releases.promote(version, channel, actorOf(req));
      await ctx.policy.recordPromotion(promoted, previousChannel(channel), channel, actorOf(req), gate);
      // Pages showing channels, promotion records and prod's policy failures reload on it.
      ctx.bus.emit('release.promoted', { version, channel });
      return presentRelease(promoted);
    },
  );

  app.get(
    '/deltas',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['deltas'],
        summary: 'Deltas between release images: queued, building, ready or failed',
        response: responses({ 200: Type.Object({ items: Type.Array(DeltaView) }) }),
      },
    },
    async () => ({
      items: (await ctx.store.deltas.list()).map((delta) => ({
        from: delta.fromSha256,
        to: delta.toSha256,
        status: delta.status,
        sha256: delta.deltaSha256,
        size: delta.deltaSize,
        codec: delta.codec,
        error: delta.error,
        url: delta.deltaSha256 ? `/api/v1/artifacts/${delta.deltaSha256}` : null,
        descriptor: delta.descriptor,
      })),
    }),
  );

  app.post(
    '/deltas',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['deltas'],
        summary: 'Ask for a delta between two releases (built in a worker thread)',
        body: Type.Object(
          { from: VersionParams.properties.version, to: VersionParams.properties.version },
          strict,
        ),
        response: responses({
          202: Type.Object({ from: Type.String(), to: Type.String(), status: Type.String() }),
        }),
      },
    },
    async (req, reply) => {
      const versions = req.body;
      const from = await existing(versions.from);
      const to = await existing(versions.to);
      if (from.imageSha256 === to.imageSha256)
        throw new ServerError('FLOTILLA_ERR_SERVER_CONFLICT', 'both releases have the same image');
      await ctx.deltas.want([from.imageSha256], to.imageSha256);
      await ctx.store.audit.record(
        actorOf(req),
        'delta.request',
        `${versions.from}->${versions.to}`,
        {},
        ctx.clock(),
      );
      const delta = await ctx.store.deltas.get(from.imageSha256, to.imageSha256);
      return reply
        .code(202)
        .send({ from: versions.from, to: versions.to, status: delta?.status ?? 'queued' });
    },
  );
};
