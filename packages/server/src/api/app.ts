import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import type { ServerContext } from '../context.js';
import { ServerError } from '../errors.js';
import { authHook } from './auth.js';
import { errorHandler } from './error-handler.js';
import { adminRoutes } from './routes/admin.js';
import { artifactRoutes } from './routes/artifacts.js';
import { deviceHistoryRoutes } from './routes/device-history.js';
import { deviceRoutes } from './routes/devices.js';
import { fleetRoutes } from './routes/fleet.js';
import type { ApiInstance } from './routes/plugin.js';
import { policyRoutes } from './routes/policy.js';
import { releaseRoutes, UPLOAD_TYPES } from './routes/releases.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { systemRoutes } from './routes/system.js';
import { trustRoutes } from './routes/trust.js';
import { vulnerabilityRoutes } from './routes/vulnerabilities.js';
import { securityHeaders } from './security-headers.js';
import { validatorFactory } from './validators.js';

/**
 * The HTTP API. Never listens (tests use `app.inject()`; `startServer` listens). Every route has a
 * schema; unknown properties are rejected, not silently dropped; every error has the shape
 * `{error:{code,message,hint}}`. OpenAPI at /docs (UI) and /docs/json.
 */
export async function buildApp(
  ctx: ServerContext,
  opts: { https?: { cert: string | Buffer; key: string | Buffer }; trustProxy?: string[] } = {},
): Promise<ApiInstance> {
  const app = Fastify({
    ...(opts.https ? { https: opts.https } : {}),
    // req.ip is the proxy's X-Forwarded-For only when the connection comes from a listed proxy.
    ...(opts.trustProxy ? { trustProxy: opts.trustProxy } : {}),
    loggerInstance: ctx.log.child({ component: 'api' }) as unknown as FastifyBaseLogger,
    // No per-request access lines (too chatty for a fleet's downloads). fastify 5.12 deprecates the
    // top-level `disableRequestLogging` option (FSTDEP023): it belongs to the log controller.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.limits.maxJsonBodyBytes,
    // Query strings are coerced to their schema types, JSON bodies are not (see validators.ts).
    schemaController: { compilersFactory: { buildValidator: validatorFactory() } },
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Uploads stream straight to disk; the artifact store enforces the size limit while writing.
  app.addContentTypeParser(UPLOAD_TYPES, (_req, payload, done) => done(null, payload));
  app.setErrorHandler(errorHandler(ctx.log));
  app.setNotFoundHandler((req) => {
    throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `${req.method} ${req.url.split('?')[0]}`);
  });
  app.addHook('onRequest', authHook(ctx));
  app.addHook('onSend', securityHeaders(ctx.dashboardDir));
  app.addHook('onResponse', async (_req, reply) => {
    ctx.metrics.httpRequests.inc({ status: `${Math.floor(reply.statusCode / 100)}xx` });
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'Flotilla server API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // Each route file is one plugin with its prefix; a file serving several paths takes /api/v1.
  const api = '/api/v1';
  await app.register(deviceRoutes, { prefix: api, ctx });
  await app.register(deviceHistoryRoutes, { prefix: api, ctx });
  await app.register(releaseRoutes, { prefix: api, ctx });
  await app.register(artifactRoutes, { prefix: `${api}/artifacts`, ctx });
  await app.register(rolloutRoutes, { prefix: `${api}/rollouts`, ctx });
  await app.register(adminRoutes, { prefix: api, ctx });
  await app.register(fleetRoutes, { prefix: api, ctx });
  await app.register(trustRoutes, { prefix: `${api}/trust`, ctx });
  await app.register(vulnerabilityRoutes, { prefix: api, ctx });
  await app.register(policyRoutes, { prefix: `${api}/policy`, ctx });
  // Health, metrics, the root, server info, events and the dashboard: paths of their own.
  await app.register(systemRoutes, { ctx });
  return app;
}
