import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ACCEL_REQUEST_HEADER, accelTarget } from '../../artifacts/artifact-delivery.js';
import { artifactPath } from '../../deploy/offers.js';
import { ServerError } from '../../errors.js';
import { countedStream } from '../../metrics/counted-stream.js';
import type { ArtifactKind } from '../../metrics.js';
import { requireToken } from '../auth.js';
import { Sha256Params } from '../schemas.js';
import { type RoutePlugin, responses } from './plugin.js';

/** Parses one `bytes=a-b` / `bytes=a-` / `bytes=-n` range; null = serve it all (several ranges, junk). */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const bounds = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!bounds || (bounds[1] === '' && bounds[2] === '')) return null;
  const [, first, last] = bounds as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (first === '') {
    const suffixLength = Number(last);
    if (suffixLength === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffixLength);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/**
 * Content-addressed downloads: a plain route streaming the file (measured 2–3× faster than
 * @fastify/static), with one Range, ETag = the sha256, If-None-Match and If-Range. Firmware may be
 * confidential, so nothing is served without a credential: a device uses the short-lived URL
 * signed into its offer (`?aud=&exp=&sig=`, checked before anything is looked up), an operator
 * sends an operator API token. Behind nginx (`artifactAccelRedirect`) the same checks run and an
 * authorised request forwarded by nginx is answered with `X-Accel-Redirect`: nginx sends the file.
 */
export const artifactRoutes: RoutePlugin = async (app, { ctx }) => {
  const authorise = async (
    req: FastifyRequest,
    reply: FastifyReply,
    sha256: string,
    signature: SignedUrlQuery,
  ) => {
    if (signature.sig !== undefined || signature.exp !== undefined || signature.aud !== undefined)
      ctx.urlSigner.verify(artifactPath(sha256), sha256, signature, ctx.clock());
    else await requireToken(ctx, req, reply, 'operator');
  };
  const serve = async (
    req: FastifyRequest,
    reply: FastifyReply,
    { sha256, signature, head }: { sha256: string; signature: SignedUrlQuery; head: boolean },
  ) => {
    await authorise(req, reply, sha256, signature);
    const row = await ctx.store.artifacts.get(sha256);
    if (!row || !ctx.artifacts.has(sha256))
      throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `artifact ${sha256}`);
    const size = row.size;
    const kind: ArtifactKind = row.kind === 'image' ? 'full' : row.kind;
    const body = (range?: { start: number; end: number }) =>
      countedStream(ctx.artifacts.open(sha256, range), (bytes) =>
        ctx.metrics.artifactBytes.inc({ kind }, bytes),
      );
    const etag = `"${sha256}"`;
    reply
      .header('etag', etag)
      .header('accept-ranges', 'bytes')
      .header('cache-control', 'private, max-age=31536000, immutable')
      .header('content-type', 'application/octet-stream');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    const ifRange = req.headers['if-range'];
    const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      reply.header('content-range', `bytes */${size}`);
      throw new ServerError('FLOTILLA_ERR_SERVER_RANGE', `${req.headers.range} of ${size} bytes`);
    }
    const accel = ctx.artifactDelivery.accelPrefix;
    if (accel && req.headers[ACCEL_REQUEST_HEADER] === '1') {
      // Authorised: nginx sends the bytes (and the Range) from the shared store; this answer is
      // only the go-ahead. Errors above (403, 404, 416) reached nginx as they are.
      ctx.metrics.artifactRedirects.inc({ kind });
      // nginx adds its own Accept-Ranges and ETag; it keeps this answer's Content-Type and Cache-Control.
      return reply
        .removeHeader('accept-ranges')
        .removeHeader('etag')
        .header('x-accel-redirect', accelTarget(accel, sha256))
        .send();
    }
    if (range) {
      reply
        .code(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1);
      return head ? reply.send() : reply.send(body(range));
    }
    reply.header('content-length', size);
    return head ? reply.send() : reply.send(body());
  };
  const Bytes = Type.String({
    format: 'binary',
    description: 'the artifact bytes (application/octet-stream)',
  });
  const schema = {
    tags: ['artifacts'],
    summary: 'Download an artifact by its sha256 (signed URL or operator token; one Range)',
    params: Sha256Params,
    headers: Type.Object({ range: Type.Optional(Type.String({ maxLength: 200 })) }),
    querystring: Type.Object(
      {
        aud: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
        exp: Type.Optional(Type.String({ pattern: '^[0-9]{1,12}$' })),
        sig: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' })),
      },
      { additionalProperties: false },
    ),
    response: responses({
      200: Bytes,
      206: Bytes,
      304: Type.Null({ description: 'not modified (If-None-Match matched the ETag)' }),
    }),
  };
  app.get('/:sha256', { config: { access: 'route' }, schema, exposeHeadRoute: false }, (req, reply) =>
    serve(req, reply, { sha256: req.params.sha256, signature: req.query, head: false }),
  );
  app.head('/:sha256', { config: { access: 'route' }, schema }, (req, reply) =>
    serve(req, reply, { sha256: req.params.sha256, signature: req.query, head: true }),
  );
};

/** The query of a signed artifact URL (all three or none). */
interface SignedUrlQuery {
  aud?: string;
  exp?: string;
  sig?: string;
}
