import { Type } from '@sinclair/typebox';
import { ServerError } from '../../errors.js';
import { publishRoot, readRootVersion } from '../../keys/server-keys.js';
import { actorOf } from '../auth.js';
import { type RoutePlugin, responses } from './plugin.js';

/**
 * A signed root document, passed through as stored: declaring its fields would make the
 * serialiser reorder them, and devices verify the signature over the signed part.
 */
export const SignedRootDocument = Type.Object(
  {},
  { additionalProperties: true, description: 'TUF root metadata: {signed, signatures}' },
);

/**
 * The trust root chain devices rotate through (TUF): `GET /trust/root/<N>.json` serves root
 * version N — public by design, as devices verify each against the one before — and 404 past the
 * current version, which ends a device's walk. `POST /trust/root` publishes root N+1 made
 * offline (admin). In its own file: artifact routes carry device authorisation, these need none.
 */
export const trustRoutes: RoutePlugin = async (app, { ctx }) => {
  app.get(
    '/root/:file',
    {
      config: { access: 'public' },
      schema: {
        tags: ['system'],
        summary: 'Root metadata of one version (root.N.json); 404 past the current version',
        params: Type.Object({ file: Type.String({ pattern: '^[1-9][0-9]{0,8}\\.json$' }) }),
        response: responses({ 200: SignedRootDocument }),
      },
    },
    async (req, reply) => {
      const version = Number.parseInt(req.params.file, 10);
      const root = readRootVersion(ctx.keys, version);
      if (!root)
        throw new ServerError(
          'FLOTILLA_ERR_SERVER_NOT_FOUND',
          `root version ${version} (current ${ctx.keys.rootMeta.version})`,
        );
      reply.header('cache-control', 'no-cache');
      return root;
    },
  );

  app.post(
    '/root',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Publish root N+1 (from `flotilla keys rotate`): devices fetch it and rotate',
        body: Type.Object({ signed: Type.Object({}), signatures: Type.Array(Type.Unknown()) }),
        response: responses({
          201: Type.Object({ version: Type.Integer({ minimum: 1 }), expires: Type.String() }),
        }),
      },
    },
    async (req, reply) => {
      const now = ctx.clock();
      const next = publishRoot(ctx.keys, req.body, new Date(now));
      await ctx.store.audit.record(
        actorOf(req),
        'trust.root.publish',
        `root.${next.version}`,
        { expires: next.expires },
        now,
      );
      ctx.log.info({ version: next.version }, 'published new root metadata');
      return reply.code(201).send({ version: next.version, expires: next.expires });
    },
  );
};
