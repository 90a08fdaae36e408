import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../../context.js';
import { actorOf } from '../auth.js';

/** The policy document: read it (viewer), replace it with a new version (admin), its history. */
export async function policyRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  app.get('/policy', { config: { access: 'viewer' }, schema: { tags: ['policy'] } }, async () =>
    ctx.policy.current(),
  );

  app.put(
    '/policy',
    {
      config: { access: 'admin' },
      // The body is checked against the policy schema by the service, which names the field.
      schema: {
        tags: ['policy'],
        summary: 'Store a new version of the policy document',
        body: Type.Object({}, { additionalProperties: true }),
      },
    },
    async (req, reply) => reply.code(201).send(ctx.policy.set(req.body, actorOf(req))),
  );

  app.get(
    '/policy/history',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['policy'],
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
      },
    },
    async (req) => ({ items: ctx.policy.history((req.query as { limit?: number }).limit ?? 100) }),
  );
}
