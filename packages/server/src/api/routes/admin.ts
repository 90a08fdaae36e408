import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { actorOf } from '../auth.js';
import { iso } from '../present.js';

const strict = { additionalProperties: false } as const;

export async function adminRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store } = ctx;
  const present = (t: {
    id: string;
    name: string;
    role: string;
    created: number;
    lastUsed: number | null;
    revoked: number | null;
  }) => ({
    ...t,
    created: iso(t.created),
    lastUsed: iso(t.lastUsed),
    revoked: iso(t.revoked),
  });

  app.post(
    '/tokens',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Create an API token (the secret is shown once; only its hash is stored)',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9 ._:@-]+$' }),
            role: Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]),
          },
          strict,
        ),
      },
    },
    async (req, reply) => {
      const b = req.body as { name: string; role: 'viewer' | 'operator' | 'admin' };
      const now = ctx.clock();
      const r = store.tx(() => {
        const r = store.tokens.create(b.name, b.role, now);
        store.audit.record(actorOf(req), 'token.create', r.token.id, { name: b.name, role: b.role }, now);
        return r;
      });
      return reply.code(201).send({ ...present(r.token), token: r.secret });
    },
  );

  app.get('/tokens', { config: { access: 'admin' }, schema: { tags: ['admin'] } }, async () => ({
    items: store.tokens.list().map(present),
  }));

  app.delete(
    '/tokens/:id',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        params: Type.Object({ id: Type.String({ pattern: '^tok_[0-9a-f]{16}$' }) }, strict),
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const now = ctx.clock();
      store.tx(() => {
        if (!store.tokens.revoke(id, now))
          throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `active token ${id}`);
        store.audit.record(actorOf(req), 'token.revoke', id, {}, now);
      });
      return { id, revoked: true };
    },
  );

  app.get(
    '/audit',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        querystring: Type.Object(
          {
            before: Type.Optional(Type.Integer({ minimum: 1 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          },
          strict,
        ),
      },
    },
    async (req) => {
      const q = req.query as { before?: number; limit?: number };
      return {
        items: store.audit
          .list(q.before ?? Number.MAX_SAFE_INTEGER, q.limit ?? 100)
          .map((e) => ({ ...e, ts: iso(e.ts) })),
      };
    },
  );

  app.post(
    '/retention/prune',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Prune releases, artifacts and deltas nothing needs (never what is deployed)',
        body: Type.Object(
          {
            keepPerChannel: Type.Integer({ minimum: 1, maximum: 1000, default: 3 }),
            dryRun: Type.Boolean({ default: false }),
          },
          strict,
        ),
      },
    },
    async (req) => {
      const b = req.body as { keepPerChannel: number; dryRun: boolean };
      return ctx.retention.prune({ keepPerChannel: b.keepPerChannel }, actorOf(req), b.dryRun);
    },
  );
}
