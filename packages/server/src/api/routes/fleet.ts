import { Type } from '@sinclair/typebox';
import { ServerError } from '../../errors.js';
import { type RoutePlugin, responses } from './plugin.js';

const Count = Type.Integer({ minimum: 0 });
const Nullable = Type.Union([Type.String(), Type.Null()]);
const Role = Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]);

export const WhoAmI = Type.Object({ id: Type.String(), name: Type.String(), role: Role });

export const FleetSummaryResponse = Type.Object({
  accepted: Count,
  online: Count,
  offline: Count,
  pending: Count,
  byStatus: Type.Object({ pending: Count, accepted: Count, rejected: Count, decommissioned: Count }),
  byVersion: Type.Array(Type.Object({ version: Nullable, count: Count })),
  byAgentState: Type.Array(Type.Object({ state: Nullable, count: Count })),
  byHardware: Type.Array(Type.Object({ hardware: Nullable, count: Count })),
});

export const VersionHistoryResponse = Type.Object({
  intervalMs: Type.Integer({ minimum: 0, description: 'how often the server samples' }),
  items: Type.Array(
    Type.Object({
      ts: Type.String({ description: 'ISO 8601 time of the sample' }),
      counts: Type.Record(Type.String(), Count, { description: 'accepted devices per version' }),
    }),
  ),
});

/** Who the token belongs to (the dashboard's header and its role checks) and whole-fleet counts. */
export const fleetRoutes: RoutePlugin = async (app, { ctx }) => {
  app.get(
    '/auth/whoami',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['auth'],
        summary: 'The signed-in token: id, name and role',
        response: responses({ 200: WhoAmI }),
      },
    },
    async (req) => {
      const token = req.token;
      if (!token) throw new ServerError('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
      return { id: token.id, name: token.name, role: token.role };
    },
  );

  app.get(
    '/fleet/summary',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary:
          'Device counts over the whole fleet: by status, online, and accepted devices by version, agent state and hardware',
        response: responses({ 200: FleetSummaryResponse }),
      },
    },
    async () => ctx.fleet.summary(),
  );

  app.get(
    '/fleet/versions/history',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary:
          'Accepted devices per version over time, as sampled by the server (bounded history), oldest first',
        querystring: Type.Object(
          {
            hours: Type.Integer({ minimum: 1, maximum: 24 * 366, default: 72 }),
            points: Type.Integer({ minimum: 2, maximum: 2000, default: 500 }),
          },
          { additionalProperties: false },
        ),
        response: responses({ 200: VersionHistoryResponse }),
      },
    },
    async (req) => {
      const since = ctx.clock() - req.query.hours * 3_600_000;
      return {
        intervalMs: ctx.limits.versionSampleIntervalMs,
        items: (await ctx.versionHistory.history(since, req.query.points)).map((s) => ({
          ts: new Date(s.ts).toISOString(),
          counts: s.counts,
        })),
      };
    },
  );
};
