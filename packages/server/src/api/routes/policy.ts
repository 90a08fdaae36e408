import { Type } from '@sinclair/typebox';
import { PolicyDocument } from '../../policy/policy-schema.js';
import { actorOf } from '../auth.js';
import { type RoutePlugin, responses } from './plugin.js';

/** One stored version of the policy document (version 0 is the built-in default, never stored). */
const PolicyVersion = Type.Object({
  version: Type.Integer({ minimum: 0 }),
  document: PolicyDocument,
  actor: Type.Union([Type.String(), Type.Null()]),
  created: Type.Union([Type.Integer(), Type.Null()]),
});

/** The policy document: read it (viewer), replace it with a new version (admin), its history. */
export const policyRoutes: RoutePlugin = async (app, { ctx }) => {
  app.get(
    '',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['policy'],
        summary: 'The current policy document and its version',
        response: responses({ 200: PolicyVersion }),
      },
    },
    async () => ctx.policy.current(),
  );

  app.put(
    '',
    {
      config: { access: 'admin' },
      // The body is checked against the policy schema by the service, which names the field.
      schema: {
        tags: ['policy'],
        summary: 'Store a new version of the policy document',
        body: Type.Object({}, { additionalProperties: true }),
        response: responses({
          201: Type.Object({ version: Type.Integer({ minimum: 1 }), document: PolicyDocument }),
        }),
      },
    },
    async (req, reply) => {
      const stored = await ctx.policy.set(req.body, actorOf(req));
      // A new version can make releases pass or fail: pages showing policy results reload on it.
      ctx.bus.emit('policy.set', { version: stored.version });
      return reply.code(201).send(stored);
    },
  );

  app.get(
    '/history',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['policy'],
        summary: 'Stored versions of the policy document, newest first',
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
        response: responses({ 200: Type.Object({ items: Type.Array(PolicyVersion) }) }),
      },
    },
    async (req) => ({ items: await ctx.policy.history(req.query.limit ?? 100) }),
  );
};
