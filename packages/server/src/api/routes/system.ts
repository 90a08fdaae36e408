import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import type {} from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { storageFault } from '../../artifacts/storage-fault.js';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import type { ServerEvent } from '../../events/bus.js';
import { bearerToken, requireToken } from '../auth.js';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Constant-time comparison of a presented secret with the expected one. */
function sameSecret(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const digest = (t: string) => createHash('sha256').update(t).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Health, metrics, the trust root, server info, the live event stream and the dashboard files. */
export async function systemRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  // Healthy means able to serve *and* store: a full or read-only disk fails the check (503) with
  // the coded reason, before the next upload finds out.
  app.get('/healthz', { config: { access: 'public' }, schema: { tags: ['system'] } }, async (_req, reply) => {
    ctx.store.db.prepare('SELECT 1').get();
    const mqtt = ctx.transport()?.kind ?? null;
    try {
      await ctx.artifacts.probeWritable();
    } catch (err) {
      const e =
        storageFault(err, 'health probe') ??
        new ServerError('FLOTILLA_ERR_SERVER_STORE', `health probe: ${(err as Error).message}`, {
          cause: err,
        });
      ctx.log.warn({ err, code: e.code }, 'health check: the artifact store cannot write');
      return reply
        .code(503)
        .send({ ok: false, mqtt, error: { code: e.code, message: e.message, hint: e.hint } });
    }
    return { ok: true, mqtt };
  });

  app.get(
    '/metrics',
    { config: { access: 'route' }, schema: { tags: ['system'], hide: true } },
    async (req, reply) => {
      if (ctx.metricsToken !== null && !sameSecret(bearerToken(req.headers.authorization), ctx.metricsToken))
        requireToken(ctx, req, reply, 'viewer');
      reply.header('content-type', ctx.metrics.registry.contentType);
      return ctx.metrics.registry.metrics();
    },
  );

  app.get(
    '/api/v1/root',
    {
      config: { access: 'public' },
      schema: { tags: ['system'], summary: 'The trust root (root.json) devices ship' },
    },
    async () => ctx.keys.root,
  );

  app.get('/api/v1/server', { config: { access: 'viewer' }, schema: { tags: ['system'] } }, async () => ({
    endpoints: ctx.endpoints,
    devices: ctx.store.devices.countsByStatus(),
    versions: ctx.store.devices.countsByVersion(),
    artifacts: ctx.store.artifacts.totals(),
    ingestQueue: (await ctx.metrics.ingestQueue.get()).values[0]?.value ?? 0,
    keys: {
      delta: ctx.keys.delta.keyId,
      release: ctx.keys.release?.keyId ?? null,
      rootVersion: ctx.keys.rootMeta.version,
    },
  }));

  let sseClients = 0;
  app.get(
    '/api/v1/events',
    {
      config: { access: 'viewer' },
      schema: { tags: ['system'], summary: 'Server-Sent Events: device, release, rollout and delta changes' },
    },
    async (req, reply) => {
      if (sseClients >= ctx.limits.maxSseClients)
        throw new ServerError('FLOTILLA_ERR_SERVER_CONFLICT', 'too many event streams');
      sseClients++;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(': flotilla events\n\n');
      const send = (e: ServerEvent) => {
        res.write(
          `event: ${e.type}\ndata: ${JSON.stringify({ ts: new Date(e.ts).toISOString(), ...e.data })}\n\n`,
        );
      };
      const unsubscribe = ctx.bus.subscribe(send);
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      const done = () => {
        clearInterval(ping);
        unsubscribe();
        sseClients--;
      };
      req.raw.once('close', done);
    },
  );

  // The dashboard (a later task) is a static directory; nothing is served when it is absent.
  const dir = ctx.dashboardDir;
  app.get('/*', { config: { access: 'public' }, schema: { hide: true } }, async (req, reply) => {
    if (!dir || !existsSync(dir))
      throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', 'no dashboard installed');
    const rel = (req.params as { '*': string })['*'] || 'index.html';
    if (rel.startsWith('api/')) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `GET /${rel}`);
    const path = normalize(join(dir, rel));
    if (!path.startsWith(normalize(dir) + sep) && path !== normalize(dir))
      throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', rel);
    // Unknown extensionless paths get the app; a missing file (a .js, .css, …) is a 404, not HTML.
    const exists = existsSync(path) && statSync(path).isFile();
    if (!exists && extname(rel) !== '') throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', rel);
    const file = exists ? path : join(dir, 'index.html');
    if (!existsSync(file)) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', rel);
    return reply
      .header('content-type', MIME[extname(file)] ?? 'application/octet-stream')
      .send(readFileSync(file));
  });
}
