import { DeviceId, HardwareId } from '@flotilla/protocol';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { actorOf } from '../auth.js';
import { iso, presentDevice } from '../present.js';
import { bodyDefaultsToEmpty, Channel, EmptyBody, IdParams, Label, Paging } from '../schemas.js';

const strict = { additionalProperties: false } as const;

export async function deviceRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, registry } = ctx;
  const get = (id: string) => {
    const d = store.devices.get(id);
    if (!d) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `device ${id}`);
    return d;
  };

  app.post(
    '/devices/register',
    {
      config: { access: 'public' },
      schema: {
        tags: ['devices'],
        summary:
          'A device registers its key (proof: a device password); pending until accepted unless a token or policy accepts it',
        body: Type.Object(
          {
            deviceId: DeviceId,
            publicKey: Type.String({ pattern: '^[0-9a-f]{64}$' }),
            proof: Type.String({ minLength: 1, maxLength: 512 }),
            hardware: Type.Optional(HardwareId),
            provisioningToken: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
          },
          strict,
        ),
      },
    },
    async (req) => {
      const body = req.body as Parameters<typeof registry.register>[0];
      const r = await registry.register(body, req.ip);
      return { device: presentDevice(r.device), ...(r.mqtt ? { mqtt: r.mqtt } : {}) };
    },
  );

  app.post(
    '/devices/bulk-register',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['devices'],
        summary:
          'Pre-register devices from a trusted factory list (public keys, no per-device proof); all or nothing; audited',
        body: Type.Object(
          {
            devices: Type.Array(
              Type.Object(
                {
                  deviceId: DeviceId,
                  publicKey: Type.String({ pattern: '^[0-9a-f]{64}$' }),
                  hardware: Type.Optional(HardwareId),
                  tags: Type.Optional(Type.Array(Label, { maxItems: 32, uniqueItems: true })),
                },
                strict,
              ),
              { minItems: 1, maxItems: ctx.limits.maxBulkRegister },
            ),
            status: Type.Optional(Type.Union([Type.Literal('accepted'), Type.Literal('pending')])),
          },
          strict,
        ),
      },
    },
    async (req) => {
      const body = req.body as {
        devices: { deviceId: string; publicKey: string; hardware?: string; tags?: string[] }[];
        status?: 'accepted' | 'pending';
      };
      return registry.bulkRegister(body.devices, body.status ?? 'accepted', actorOf(req));
    },
  );

  app.get(
    '/devices',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        querystring: Type.Object(
          {
            status: Type.Optional(
              Type.Union(['pending', 'accepted', 'rejected', 'decommissioned'].map((s) => Type.Literal(s))),
            ),
            hardware: Type.Optional(HardwareId),
            tag: Type.Optional(Label),
            group: Type.Optional(Label),
            channel: Type.Optional(Channel),
            version: Type.Optional(Type.String({ maxLength: 64 })),
            online: Type.Optional(Type.Boolean()),
            ...Paging,
          },
          strict,
        ),
      },
    },
    async (req) => {
      const q = req.query as Record<string, unknown> & { limit: number; offset: number };
      const r = store.devices.list({ ...q, limit: q.limit ?? 100, offset: q.offset ?? 0 } as never);
      return { items: r.items.map(presentDevice), total: r.total };
    },
  );

  app.get(
    '/devices/:id',
    { config: { access: 'viewer' }, schema: { tags: ['devices'], params: IdParams } },
    async (req) => presentDevice(get((req.params as { id: string }).id)),
  );

  for (const [action, to] of [
    ['accept', 'accepted'],
    ['reject', 'rejected'],
    ['decommission', 'decommissioned'],
  ] as const) {
    app.post(
      `/devices/:id/${action}`,
      {
        config: { access: 'operator' },
        preValidation: bodyDefaultsToEmpty,
        schema: { tags: ['devices'], params: IdParams, body: EmptyBody },
      },
      async (req) =>
        presentDevice(await registry.setStatus((req.params as { id: string }).id, to, actorOf(req))),
    );
  }

  app.put(
    '/devices/:id/placement',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['devices'],
        summary: 'Set tags, group and channel (what rollouts target)',
        params: IdParams,
        body: Type.Object(
          {
            tags: Type.Optional(Type.Array(Label, { maxItems: 32, uniqueItems: true })),
            group: Type.Optional(Type.Union([Label, Type.Null()])),
            channel: Type.Optional(Channel),
          },
          { ...strict, minProperties: 1 },
        ),
      },
    },
    async (req) =>
      presentDevice(
        registry.setPlacement((req.params as { id: string }).id, req.body as never, actorOf(req)),
      ),
  );

  app.get(
    '/devices/:id/inventory',
    { config: { access: 'viewer' }, schema: { tags: ['devices'], params: IdParams } },
    async (req) => {
      const d = get((req.params as { id: string }).id);
      return { deviceId: d.id, inventory: d.inventory };
    },
  );

  app.get(
    '/devices/:id/timeline',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: 'Device events, newest first (rollback reasons included)',
        params: IdParams,
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
      const d = get((req.params as { id: string }).id);
      const q = req.query as { before?: number; limit?: number };
      const events = store.events.timeline(d.id, q.before ?? Number.MAX_SAFE_INTEGER, q.limit ?? 100);
      return {
        items: events.map((e) => ({
          id: e.id,
          eventId: e.eventId,
          kind: e.kind,
          deploymentId: e.deploymentId,
          ts: iso(e.ts),
          received: iso(e.received),
          reason: e.body.reason ?? null,
          progress: e.body.progress ?? null,
          version: e.body.version ?? null,
          detail: e.body.detail ?? null,
        })),
      };
    },
  );

  app.get(
    '/devices/:id/deployments',
    { config: { access: 'viewer' }, schema: { tags: ['devices'], params: IdParams } },
    async (req) => ({ items: store.deployments.forDevice(get((req.params as { id: string }).id).id) }),
  );

  app.post(
    '/provisioning-tokens',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['devices'],
        summary: 'A one-time token a new device uses to join (shown once)',
        body: Type.Object(
          {
            label: Type.String({ minLength: 1, maxLength: 128 }),
            ttlSeconds: Type.Integer({ minimum: 60, maximum: 365 * 86_400, default: 86_400 }),
            autoAccept: Type.Boolean({ default: true }),
          },
          strict,
        ),
      },
    },
    async (req, reply) => {
      const b = req.body as { label: string; ttlSeconds: number; autoAccept: boolean };
      const now = ctx.clock();
      const t = store.tx(() => {
        const t = store.provisioning.create(b.label, b.ttlSeconds * 1000, b.autoAccept, now);
        store.audit.record(actorOf(req), 'provisioning-token.create', t.id, { label: b.label }, now);
        return t;
      });
      return reply.code(201).send({ id: t.id, token: t.secret, expires: iso(t.expires) });
    },
  );

  app.get(
    '/provisioning-tokens',
    { config: { access: 'operator' }, schema: { tags: ['devices'] } },
    async () => ({
      items: store.provisioning.list(),
    }),
  );
}
