import { Type } from '@sinclair/typebox';
import { ServerError } from '../../errors.js';
import { RolloutCreateRequest, RolloutPolicy, type RolloutSummary } from '../../rollout/index.js';
import type { RolloutRow } from '../../store/repos/rollouts.js';
import { actorOf } from '../auth.js';
import { iso } from '../present.js';
import { RolloutRuntimeView, RolloutSummaryView } from '../rollout-views.js';
import { bodyDefaultsToEmpty, EmptyBody, Paging, RolloutParams } from '../schemas.js';
import { DeploymentView, IsoTime } from '../views.js';
import { type RoutePlugin, responses } from './plugin.js';

const strict = { additionalProperties: false } as const;

const RolloutView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  release: Type.String({ description: 'release id' }),
  status: Type.String(),
  // as created, every default filled in (normalizePolicy)
  policy: RolloutPolicy,
  runtime: RolloutRuntimeView,
  createdBy: Type.String(),
  created: IsoTime,
  updated: IsoTime,
  summary: RolloutSummaryView,
});

/** Rollouts: list, create (policy-gated), inspect, their deployments, and the operator actions. */
export const rolloutRoutes: RoutePlugin = async (app, { ctx }) => {
  const present = (rollout: RolloutRow, summary: RolloutSummary) => ({
    id: rollout.id,
    name: rollout.name,
    release: rollout.releaseId,
    status: rollout.status,
    policy: rollout.policy,
    runtime: rollout.runtime,
    createdBy: rollout.createdBy,
    created: iso(rollout.created),
    updated: iso(rollout.updated),
    summary,
  });
  const withSummary = async (rollout: RolloutRow) => present(rollout, await ctx.rollouts.summary(rollout.id));
  const existing = async (id: string) => {
    const rollout = await ctx.store.rollouts.get(id);
    if (!rollout) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `rollout ${id}`);
    return rollout;
  };

  // Policy gate (issue 17): the release must meet the policy of every channel the rollout targets.
  const policyGate = async (body: { release: string; policy: unknown }) => {
    const gated = await ctx.store.releases.get(body.release);
    if (gated)
      await ctx.policy.gateRollout(
        gated,
        (body.policy as { target?: { channels?: string[] } }).target?.channels,
      );
  };

  app.get(
    '',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary: 'Rollouts, newest first, each with its summary',
        querystring: Type.Object({ ...Paging }, strict),
        response: responses({ 200: Type.Object({ items: Type.Array(RolloutView) }) }),
      },
    },
    async (req) => {
      const rows = await ctx.store.rollouts.list(req.query.limit ?? 100, req.query.offset ?? 0);
      const summaries = await ctx.rollouts.summaries(rows);
      return { items: rows.map((row) => present(row, summaries.get(row.id)!)) };
    },
  );

  app.post(
    '',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['rollouts'],
        summary: 'Create a rollout of a release (it must meet the policy of every target channel)',
        body: RolloutCreateRequest,
        response: responses({ 201: RolloutView }),
      },
    },
    async (req, reply) => {
      const body = req.body;
      await policyGate(body);
      const created = await ctx.rollouts.create(body, actorOf(req));
      return reply.code(201).send(await withSummary((await ctx.store.rollouts.get(created.id))!));
    },
  );

  app.post(
    '/preview',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary:
          'How many devices a rollout would take now and how many each phase gets (nothing is stored; same checks as create)',
        body: RolloutCreateRequest,
        response: responses({
          200: Type.Object({
            release: Type.String(),
            devices: Type.Integer({ minimum: 0 }),
            online: Type.Integer({ minimum: 0 }),
            downgrades: Type.Integer({ minimum: 0 }),
            membership: Type.Union([Type.Literal('static'), Type.Literal('dynamic')]),
            phases: Type.Array(Type.Object({ name: Type.String(), devices: Type.Integer({ minimum: 0 }) })),
          }),
        }),
      },
    },
    async (req) => {
      await policyGate(req.body);
      return ctx.rollouts.preview(req.body);
    },
  );

  app.get(
    '/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary: 'One rollout with its summary',
        params: RolloutParams,
        response: responses({ 200: RolloutView }),
      },
    },
    async (req) => withSummary(await existing(req.params.id)),
  );

  app.get(
    '/:id/deployments',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary: 'Every device of a rollout and where its update stands',
        params: RolloutParams,
        response: responses({ 200: Type.Object({ items: Type.Array(DeploymentView) }) }),
      },
    },
    async (req) => ({ items: await ctx.store.deployments.forRollout((await existing(req.params.id)).id) }),
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
      `/:id/${action}`,
      {
        config: { access: 'operator' },
        preValidation: bodyDefaultsToEmpty,
        schema: {
          tags: ['rollouts'],
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} a rollout`,
          params: RolloutParams,
          body,
          response: responses({ 200: RolloutView }),
        },
      },
      async (req) => {
        const { id } = req.params;
        await existing(id);
        return withSummary(await ctx.rollouts.act(id, action, actorOf(req), req.body ?? {}));
      },
    );
  }
};
