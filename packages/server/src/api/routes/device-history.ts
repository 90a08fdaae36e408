import { Type } from '@sinclair/typebox';
import { deviceHistory } from '../../devices/history.js';
import { ServerError } from '../../errors.js';
import { iso } from '../present.js';
import { IdParams } from '../schemas.js';
import { IsoTime, OpenObject } from '../views.js';
import { type RoutePlugin, responses } from './plugin.js';

const HistoryEntryView = Type.Object({
  ts: IsoTime,
  source: Type.Union([Type.Literal('event'), Type.Literal('deployment'), Type.Literal('audit')]),
  kind: Type.String(),
  summary: Type.String(),
  ref: Type.String({ description: 'the event, deployment or audit entry id' }),
  // Open on purpose: each source (event kinds, deployments, audit actions) records its own shape.
  detail: OpenObject('what the source recorded'),
});

/** A device's timeline: its reports, its deployments and the audit entries about it, merged. */
export const deviceHistoryRoutes: RoutePlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.get(
    '/devices/:id/history',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary:
          "The device's history, newest first: events it reported, deployments, audit entries about it (page with `until` = the oldest ts seen)",
        params: IdParams,
        querystring: Type.Object(
          {
            until: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601, exclusive' })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          },
          { additionalProperties: false },
        ),
        response: responses({
          200: Type.Object({ deviceId: Type.String(), items: Type.Array(HistoryEntryView) }),
        }),
      },
    },
    async (req) => {
      const { id } = req.params;
      if (!(await store.devices.get(id)))
        throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `device ${id}`);
      const until = req.query.until === undefined ? Number.MAX_SAFE_INTEGER : Date.parse(req.query.until);
      const items = await deviceHistory(store, id, until, req.query.limit ?? 100);
      return { deviceId: id, items: items.map((e) => ({ ...e, ts: iso(e.ts) })) };
    },
  );
};
