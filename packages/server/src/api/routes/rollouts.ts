import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { RolloutCreateRequest, type RolloutSummary } from '../../rollout/index.js';
import type { RolloutRow } from '../../store/repos/rollouts.js';
import { actorOf } from '../auth.js';
import { iso } from '../present.js';
import { bodyDefaultsToEmpty, EmptyBody, Paging, RolloutParams } from '../schemas.js';

const strict = { additionalProperties: false } as const;

export async function rolloutRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const present = (r: RolloutRow, summary: RolloutSummary) => ({
    id: r.id,
    name: r.name,
    release: r.releaseId,
    status: r.status,
    policy: r.policy,
    runtime: r.runtime,
    createdBy: r.createdBy,
    created: iso(r.created),
    updated: iso(r.updated),
    summary,
  });
  const withSummary = (r: RolloutRow) => present(r, ctx.rollouts.summary(r.id));
  const get = (id: string) => {
    const r = ctx.store.rollouts.get(id);
    if (!r) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `rollout ${id}`);
    return r;
  };

  app.get(
    '/rollouts',
    {
      config: { access: 'viewer' },
      schema: { tags: ['rollouts'], querystring: Type.Object({ ...Paging }, strict) },
    },
    async (req) => {
      const q = req.query as { limit?: number; offset?: number };
      const rows = ctx.store.rollouts.list(q.limit ?? 100, q.offset ?? 0);
      const summaries = ctx.rollouts.summaries(rows);
      return { items: rows.map((r) => present(r, summaries.get(r.id)!)) };
    },
  );

  app.post(
    '/rollouts',
    { config: { access: 'operator' }, schema: { tags: ['rollouts'], body: RolloutCreateRequest } },
    async (req, reply) => {
      const body = req.body as { name?: string; release: string; policy: unknown };
      // Policy gate (issue 17): the release must meet the policy of every channel the rollout targets.
      const gated = ctx.store.releases.get(body.release);
      if (gated)
        await ctx.policy.gateRollout(
          gated,
          (body.policy as { target?: { channels?: string[] } }).target?.channels,
        );
      const r = ctx.rollouts.create(body, actorOf(req));
      return reply.code(201).send(withSummary(ctx.store.rollouts.get(r.id)!));
    },
  );

  app.get(
    '/rollouts/:id',
    { config: { access: 'viewer' }, schema: { tags: ['rollouts'], params: RolloutParams } },
    async (req) => withSummary(get((req.params as { id: string }).id)),
  );

  app.get(
    '/rollouts/:id/deployments',
    { config: { access: 'viewer' }, schema: { tags: ['rollouts'], params: RolloutParams } },
    async (req) => ({ items: ctx.store.deployments.forRollout(get((req.params as { id: string }).id).id) }),
  );

  const actions = {
    pause: Type.Object({ note: Type.Optional(Type.String({ maxLength: 500 })) }, strict),
    resume: EmptyBody,
    abort: Type.Object({ rollback: Type.Optional(Type.Boolean()) }, strict),
    approve: Type.Object({ phase: Type.Optional(Type.Integer({ minimum: 0, maximum: 31 })) }, strict),
  } as const;
  for (const [action, body] of Object.entries(actions) as [
    keyof typeof actions,
    (typeof actions)[keyof typeof actions],
  ][]) {
    app.post(
      `/rollouts/:id/${action}`,
      {
        config: { access: 'operator' },
        preValidation: bodyDefaultsToEmpty,
        schema: { tags: ['rollouts'], params: RolloutParams, body },
      },
      async (req) => {
        const id = (req.params as { id: string }).id;
        get(id);
        return withSummary(ctx.rollouts.act(id, action, actorOf(req), (req.body ?? {}) as object));
      },
    );
  }
}
