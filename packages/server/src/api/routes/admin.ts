import { Type } from '@sinclair/typebox';
import { ServerError } from '../../errors.js';
import type { ApiToken } from '../../store/repos/tokens.js';
import { actorOf } from '../auth.js';
import { iso } from '../present.js';
import { type RoutePlugin, responses } from './plugin.js';

const strict = { additionalProperties: false } as const;
const Role = Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]);
const IsoTime = Type.String({ description: 'ISO 8601 time' });
const IsoTimeOrNull = Type.Union([IsoTime, Type.Null()]);

const TokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  role: Role,
  created: IsoTime,
  lastUsed: IsoTimeOrNull,
  revoked: IsoTimeOrNull,
});

const AuditEntryView = Type.Object({
  id: Type.Integer(),
  ts: IsoTime,
  actor: Type.String(),
  action: Type.String(),
  target: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Object({}, { additionalProperties: true }),
});

const PruneResultView = Type.Object({
  releases: Type.Array(Type.String()),
  deltas: Type.Array(Type.Object({ from: Type.String(), to: Type.String() })),
  artifacts: Type.Array(Type.String()),
  bytes: Type.Integer({ minimum: 0 }),
  kept: Type.Array(Type.Object({ release: Type.String(), why: Type.Array(Type.String()) })),
});

const presentToken = (token: ApiToken) => ({
  ...token,
  created: iso(token.created),
  lastUsed: iso(token.lastUsed),
  revoked: iso(token.revoked),
});

/** API tokens, the audit log and retention pruning: all admin-only. */
export const adminRoutes: RoutePlugin = async (app, { ctx }) => {
  const { store } = ctx;

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
            role: Role,
          },
          strict,
        ),
        response: responses({
          201: Type.Object({ ...TokenView.properties, token: Type.String({ description: 'shown once' }) }),
        }),
      },
    },
    async (req, reply) => {
      const { name, role } = req.body;
      const now = ctx.clock();
      const created = await store.tx(async (tx) => {
        const created = await tx.tokens.create(name, role, now);
        await tx.audit.record(actorOf(req), 'token.create', created.token.id, { name, role }, now);
        return created;
      });
      return reply.code(201).send({ ...presentToken(created.token), token: created.secret });
    },
  );

  app.get(
    '/tokens',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'All API tokens, revoked ones included (never their secrets)',
        response: responses({ 200: Type.Object({ items: Type.Array(TokenView) }) }),
      },
    },
    async () => ({ items: (await store.tokens.list()).map(presentToken) }),
  );

  app.delete(
    '/tokens/:id',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Revoke an API token',
        params: Type.Object({ id: Type.String({ pattern: '^tok_[0-9a-f]{16}$' }) }, strict),
        response: responses({ 200: Type.Object({ id: Type.String(), revoked: Type.Literal(true) }) }),
      },
    },
    async (req) => {
      const { id } = req.params;
      const now = ctx.clock();
      await store.tx(async (tx) => {
        if (!(await tx.tokens.revoke(id, now)))
          throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `active token ${id}`);
        await tx.audit.record(actorOf(req), 'token.revoke', id, {}, now);
      });
      return { id, revoked: true as const };
    },
  );

  app.get(
    '/audit',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary:
          'The audit log, newest first, filtered by actor, action, target and time (page with `before` = the last id seen)',
        querystring: Type.Object(
          {
            before: Type.Optional(Type.Integer({ minimum: 1 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
            actor: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 200,
                description: "as recorded, or a token's name or id",
              }),
            ),
            action: Type.Optional(
              Type.String({
                minLength: 1,
                maxLength: 64,
                pattern: '^[a-z0-9.-]+\\*?$',
                description: 'an action (token.create) or a prefix ending in * (token.*)',
              }),
            ),
            target: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            since: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601, inclusive' })),
            until: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601, exclusive' })),
          },
          strict,
        ),
        response: responses({ 200: Type.Object({ items: Type.Array(AuditEntryView) }) }),
      },
    },
    async (req) => {
      const { limit, since, until, ...filter } = req.query;
      return {
        items: (
          await store.audit.query(
            {
              ...filter,
              ...(since !== undefined ? { since: Date.parse(since) } : {}),
              ...(until !== undefined ? { until: Date.parse(until) } : {}),
            },
            limit ?? 100,
          )
        ).map((entry) => ({ ...entry, ts: iso(entry.ts) })),
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
        response: responses({ 200: PruneResultView }),
      },
    },
    async (req) =>
      ctx.retention.prune({ keepPerChannel: req.body.keepPerChannel }, actorOf(req), req.body.dryRun),
  );
};
