import type { Readable } from 'node:stream';
import { HardwareId, ImageFormat, ReleaseName, SemVer } from '@flotilla/protocol';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import type { Channel as ChannelName } from '../../store/repos/releases.js';
import { actorOf } from '../auth.js';
import { presentRelease } from '../present.js';
import { Channel, VersionParams } from '../schemas.js';

const previousChannel = (c: ChannelName): ChannelName | null =>
  c === 'prod' ? 'staging' : c === 'staging' ? 'dev' : null;

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
 * request (that would reset the socket before the coded error is sent): `stopOnError` closes the
 * connection after the answer instead, so the unread rest is never received.
 */
function uploadBody(body: unknown): AsyncIterable<Buffer> {
  return (body as Readable).iterator({ destroyOnReturn: false });
}

function declaredLength(headers: Record<string, unknown>): number | undefined {
  const n = Number(headers['content-length']);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** A refused upload's connection is closed after the answer: the client stops sending. */
async function stopOnError<T>(reply: FastifyReply, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    void reply.header('connection', 'close');
    throw err;
  }
}

export async function releaseRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const get = (version: string) => {
    const r = ctx.store.releases.get(version);
    if (!r) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${version}`);
    return r;
  };

  app.get(
    '/releases',
    {
      config: { access: 'viewer' },
      schema: { tags: ['releases'], querystring: Type.Object({ channel: Type.Optional(Channel) }, strict) },
    },
    async (req) => ({
      items: ctx.store.releases
        .list((req.query as { channel?: ChannelName }).channel)
        .map((r) => presentRelease(r)),
    }),
  );

  app.get(
    '/releases/:version',
    { config: { access: 'viewer' }, schema: { tags: ['releases'], params: VersionParams } },
    async (req) => presentRelease(get((req.params as { version: string }).version), true),
  );

  app.get(
    '/releases/:version/manifest',
    { config: { access: 'viewer' }, schema: { tags: ['releases'], params: VersionParams } },
    async (req) => get((req.params as { version: string }).version).manifest,
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
      },
    },
    async (req, reply) => {
      const r = await stopOnError(reply, () =>
        ctx.releases.uploadBundle(uploadBody(req.body), actorOf(req), declaredLength(req.headers)),
      );
      return reply.code(r.created ? 201 : 200).send(presentRelease(r.release));
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
            input: Type.Union(['tar', 'tar.gz', 'tar.zst', 'tar.xz', 'image'].map((s) => Type.Literal(s))),
            kind: Type.Optional(Type.Union([Type.Literal('release'), Type.Literal('recovery')])),
            sourceRevision: Type.Optional(Type.String({ maxLength: 200 })),
            expiresDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
          },
          strict,
        ),
      },
    },
    async (req, reply) => {
      const q = req.query as Parameters<typeof ctx.releases.buildFromUpload>[1];
      const r = await stopOnError(reply, () =>
        ctx.releases.buildFromUpload(
          uploadBody(req.body),
          { ...q, format: q.format ?? 'ext4' },
          actorOf(req),
          declaredLength(req.headers),
        ),
      );
      return reply.code(201).send(presentRelease(r.release));
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
      },
    },
    async (req) => {
      const version = (req.params as { version: string }).version;
      const { channel, overrideReason } = req.body as { channel: ChannelName; overrideReason?: string };
      // Policy gate (issue 17): refuses with FLOTILLA_ERR_POLICY_VIOLATION; then the promotion record.
      const before = get(version);
      const gate = await ctx.policy.gatePromotion(
        before,
        channel,
        { actor: actorOf(req), role: req.token?.role ?? 'viewer' },
        overrideReason,
      );
      const promoted = ctx.releases.promote(version, channel, actorOf(req));
      ctx.policy.recordPromotion(promoted, previousChannel(channel), channel, actorOf(req), gate);
      return presentRelease(promoted);
    },
  );

  app.get('/deltas', { config: { access: 'viewer' }, schema: { tags: ['deltas'] } }, async () => ({
    items: ctx.store.deltas.list().map((d) => ({
      from: d.fromSha256,
      to: d.toSha256,
      status: d.status,
      sha256: d.deltaSha256,
      size: d.deltaSize,
      codec: d.codec,
      error: d.error,
      url: d.deltaSha256 ? `/api/v1/artifacts/${d.deltaSha256}` : null,
      descriptor: d.descriptor,
    })),
  }));

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
      },
    },
    async (req, reply) => {
      const b = req.body as { from: string; to: string };
      const from = get(b.from);
      const to = get(b.to);
      if (from.imageSha256 === to.imageSha256)
        throw new ServerError('FLOTILLA_ERR_SERVER_CONFLICT', 'both releases have the same image');
      ctx.deltas.want([from.imageSha256], to.imageSha256);
      ctx.store.audit.record(actorOf(req), 'delta.request', `${b.from}->${b.to}`, {}, ctx.clock());
      const d = ctx.store.deltas.get(from.imageSha256, to.imageSha256);
      return reply.code(202).send({ from: b.from, to: b.to, status: d?.status ?? 'queued' });
    },
  );
}
