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
};
