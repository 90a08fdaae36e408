import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import type {} from '@fastify/swagger';
import { Type } from '@sinclair/typebox';
import { storageFault } from '../../artifacts/storage-fault.js';
import { ServerError, StoreError } from '../../errors.js';
import type { ServerEvent } from '../../events/bus.js';
import { bearerToken, requireToken } from '../auth.js';
import { ErrorResponse } from '../schemas.js';
import { OrNull } from '../views.js';
import { type RoutePlugin, responses } from './plugin.js';
import { SignedRootDocument } from './trust.js';

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

const Transport = OrNull(Type.String({ description: 'the MQTT transport in use' }));

/** Health, metrics, the trust root, server info, the live event stream and the dashboard files. */
export const systemRoutes: RoutePlugin = async (app, { ctx }) => {
  // Healthy means able to serve *and* store: a full or read-only disk fails the check (503) with
  // the coded reason, before the next upload finds out.
  const healthSchema = {
    tags: ['system'],
    summary: 'Able to serve and to store (503 with the coded reason when not)',
    response: responses({
      200: Type.Object({ ok: Type.Literal(true), mqtt: Transport }),
      503: Type.Object({ ok: Type.Literal(false), mqtt: Transport, error: ErrorResponse.properties.error }),
    }),
  };
  app.get('/healthz', { config: { access: 'public' }, schema: healthSchema }, async (_req, reply) => {
    const mqtt = ctx.transport()?.kind ?? null;
    const unhealthy = (fault: ServerError | StoreError) =>
      reply.code(503).send({
        ok: false as const,
        mqtt,
        error: { code: fault.code, message: fault.message, hint: fault.hint },
      });
    try {
      await ctx.store.sql.get('SELECT 1');
    } catch (err) {
      // PostgreSQL down or restarting: 503 with the coded reason, so a load balancer drains this node.
      if (!(err instanceof StoreError)) throw err;
      ctx.log.warn({ err, code: err.code }, 'health check: the database cannot be reached');
      return unhealthy(err);
    }
    try {
      await ctx.artifacts.probeWritable();
    } catch (err) {
      const fault =
        storageFault(err, 'health probe') ??
        new ServerError('FLOTILLA_ERR_SERVER_STORE', `health probe: ${(err as Error).message}`, {
          cause: err,
        });
      ctx.log.warn({ err, code: fault.code }, 'health check: the artifact store cannot write');
      return unhealthy(fault);
    }
    return { ok: true as const, mqtt };
  });

  app.get(
    '/metrics',
    {
      config: { access: 'route' },
      schema: {
        tags: ['system'],
        hide: true,
        response: responses({ 200: Type.String({ description: 'Prometheus text exposition' }) }),
      },
    },
    async (req, reply) => {
      if (ctx.metricsToken !== null && !sameSecret(bearerToken(req.headers.authorization), ctx.metricsToken))
        await requireToken(ctx, req, reply, 'viewer');
      reply.header('content-type', ctx.metrics.registry.contentType);
      return ctx.metrics.registry.metrics();
    },
  );

  app.get(
    '/api/v1/root',
    {
      config: { access: 'public' },
      schema: {
        tags: ['system'],
        summary: 'The trust root (root.json) devices ship',
        response: responses({ 200: SignedRootDocument }),
      },
    },
    async () => ctx.keys.root,
  );

  const ServerInfo = Type.Object({
    endpoints: Type.Object(
      {
        api: Type.Optional(Type.String()),
        mqtt: Type.Optional(Type.String()),
        mqtts: Type.Optional(Type.String()),
        ws: Type.Optional(Type.String()),
      },
      { description: 'the URLs the server listens on (a listener not started is absent)' },
    ),
    devices: Type.Record(Type.String(), Type.Integer(), { description: 'device counts by status' }),
    versions: Type.Array(Type.Object({ version: OrNull(Type.String()), count: Type.Integer() })),
    artifacts: Type.Array(Type.Object({ kind: Type.String(), count: Type.Integer(), bytes: Type.Integer() })),
    ingestQueue: Type.Number(),
    keys: Type.Object({
      delta: Type.String(),
      release: OrNull(Type.String()),
      rootVersion: Type.Integer(),
    }),
  });
  const serverSchema = {
    tags: ['system'],
    summary: 'Endpoints, device and artifact counts, the ingest queue and the key ids in use',
    response: responses({ 200: ServerInfo }),
  };
  app.get('/api/v1/server', { config: { access: 'viewer' }, schema: serverSchema }, async () => ({
    endpoints: ctx.endpoints,
    devices: await ctx.store.devices.countsByStatus(),
    versions: await ctx.store.devices.countsByVersion(),
    artifacts: await ctx.store.artifacts.totals(),
    ingestQueue: (await ctx.metrics.ingestQueue.get()).values[0]?.value ?? 0,
    keys: {
      delta: ctx.keys.delta.keyId,
      release: ctx.keys.release?.keyId ?? null,
      rootVersion: ctx.keys.rootMeta.version,
    },
  }));

  const ClusterInfo = Type.Object({
    node: Type.String({ description: 'the node that answered (`--node-id`)' }),
    store: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
    engine: Type.Object(
      {
        holder: OrNull(Type.String({ description: 'the node the lease names (null: never taken)' })),
        epoch: OrNull(Type.Integer({ description: 'grows with every change of holder' })),
        here: Type.Boolean({ description: 'this node runs the rollout engine now' }),
      },
      { description: 'the rollout-engine lease' },
    ),
  });
  app.get(
    '/api/v1/cluster',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['system'],
        summary: 'This node, the store it shares, and which node runs the rollout engine',
        response: responses({ 200: ClusterInfo }),
      },
    },
    async () => ({ node: ctx.cluster.node, store: ctx.cluster.store, engine: await ctx.cluster.engine() }),
  );

  let sseClients = 0;
  app.get(
    '/api/v1/events',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['system'],
        summary: 'Server-Sent Events: device, release, rollout and delta changes',
        response: responses({ 200: Type.String({ description: 'text/event-stream' }) }),
      },
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
      const send = (event: ServerEvent) => {
        res.write(
          `event: ${event.type}\ndata: ${JSON.stringify({ ts: new Date(event.ts).toISOString(), ...event.data })}\n\n`,
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
  const dashboardSchema = {
    hide: true,
    params: Type.Object({ '*': Type.String() }),
    response: responses({
      200: Type.Unsafe<Buffer>(Type.String({ format: 'binary', description: 'a dashboard file' })),
    }),
  };
  app.get('/*', { config: { access: 'public' }, schema: dashboardSchema }, async (req, reply) => {
    if (!dir || !existsSync(dir))
      throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', 'no dashboard installed');
    const rel = req.params['*'] || 'index.html';
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
};
