import { DeviceId, HardwareId } from '@flotilla/protocol';
import { Type } from '@sinclair/typebox';
import { ServerError } from '../../errors.js';
import { actorOf } from '../auth.js';
import { iso, presentDevice } from '../present.js';
import { bodyDefaultsToEmpty, Channel, EmptyBody, IdParams, Label, Paging } from '../schemas.js';
import { DeploymentView, DeviceView, EpochMs, IsoTime, OpenObject, OrNull } from '../views.js';
import { type RoutePlugin, responses } from './plugin.js';

const strict = { additionalProperties: false } as const;
const DEVICE_ID_PATTERN = DeviceId.pattern!;

const TimelineEntry = Type.Object({
  id: Type.Integer(),
  eventId: Type.String(),
  kind: Type.String(),
  deploymentId: OrNull(Type.String()),
  ts: IsoTime,
  received: IsoTime,
  reason: Type.Unknown(),
  progress: Type.Unknown(),
  version: Type.Unknown(),
  detail: Type.Unknown(),
});

const ProvisioningTokenView = Type.Object({
  id: Type.String(),
  label: Type.String(),
  autoAccept: Type.Boolean(),
  expires: EpochMs,
  usedBy: OrNull(Type.String()),
  usedAt: OrNull(EpochMs),
  created: EpochMs,
});

/** Devices (registration, status, placement, what they report) and provisioning tokens. */
export const deviceRoutes: RoutePlugin = async (app, { ctx }) => {
  const { store, registry } = ctx;
  const existing = async (id: string) => {
    const device = await store.devices.get(id);
    if (!device) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `device ${id}`);
    return device;
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
        response: responses({
          200: Type.Object({
            device: DeviceView,
            mqtt: Type.Optional(
              Type.Object(
                { username: Type.String(), password: Type.String() },
                { description: 'MQTT credentials (external broker only), shown once' },
              ),
            ),
          }),
        }),
      },
    },
    async (req) => {
      const registered = await registry.register(req.body, req.ip);
      return {
        device: presentDevice(registered.device),
        ...(registered.mqtt ? { mqtt: registered.mqtt } : {}),
      };
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
        response: responses({
          200: Type.Object({ registered: Type.Array(Type.String()), unchanged: Type.Array(Type.String()) }),
        }),
      },
    },
    async (req) => registry.bulkRegister(req.body.devices, req.body.status ?? 'accepted', actorOf(req)),
  );

  app.get(
    '/devices',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary:
          'Devices matching a filter, in id order, one page at a time, with the total; `next` continues after the page (`after`)',
        querystring: Type.Object(
          {
            q: Type.Optional(
              Type.String({ pattern: DEVICE_ID_PATTERN, description: 'device ids that start with this' }),
            ),
            after: Type.Optional(
              Type.String({
                pattern: DEVICE_ID_PATTERN,
                description: 'the `next` of the previous page: ids after this one',
              }),
            ),
            status: Type.Optional(
              Type.Union([
                Type.Literal('pending'),
                Type.Literal('accepted'),
                Type.Literal('rejected'),
                Type.Literal('decommissioned'),
              ]),
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
        response: responses({
          200: Type.Object({
            items: Type.Array(DeviceView),
            total: Type.Integer({ minimum: 0 }),
            next: OrNull(Type.String({ description: 'pass as `after` for the next page; null on the last' })),
          }),
        }),
      },
    },
    async (req, reply) => {
      const filter = req.query;
      const started = performance.now();
      const page = await store.devices.list({
        ...filter,
        limit: filter.limit ?? 100,
        offset: filter.offset ?? 0,
      });
      // The search's own cost, apart from the network: browsers and tests read it from the header.
      reply.header(
        'server-timing',
        `db;dur=${(performance.now() - started).toFixed(2)};desc="device search"`,
      );
      return { items: page.items.map(presentDevice), total: page.total, next: page.next };
    },
  );

  app.get(
    '/devices/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: 'One device',
        params: IdParams,
        response: responses({ 200: DeviceView }),
      },
    },
    async (req) => presentDevice(await existing(req.params.id)),
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
        schema: {
          tags: ['devices'],
          summary: `Set a device's status to ${to}`,
          params: IdParams,
          body: EmptyBody,
          response: responses({ 200: DeviceView }),
        },
      },
      async (req) => presentDevice(await registry.setStatus(req.params.id, to, actorOf(req))),
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
        response: responses({ 200: DeviceView }),
      },
    },
    async (req) => presentDevice(await registry.setPlacement(req.params.id, req.body, actorOf(req))),
  );

  app.get(
    '/devices/:id/inventory',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: 'What the device last reported about itself (null before its first report)',
        params: IdParams,
        response: responses({
          200: Type.Object({
            deviceId: Type.String(),
            // Open on purpose: served exactly as the device sent it (validated on ingest against
            // protocol's InventoryMessage, whose schemaVersion a response schema would overwrite).
            inventory: OrNull(OpenObject('the inventory message, as the device sent it')),
          }),
        }),
      },
    },
    async (req) => {
      const device = await existing(req.params.id);
      return { deviceId: device.id, inventory: device.inventory };
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
        response: responses({ 200: Type.Object({ items: Type.Array(TimelineEntry) }) }),
      },
    },
    async (req) => {
      const device = await existing(req.params.id);
      const { before, limit } = req.query;
      const events = await store.events.timeline(device.id, before ?? Number.MAX_SAFE_INTEGER, limit ?? 100);
      return {
        items: events.map((event) => ({
          id: event.id,
          eventId: event.eventId,
          kind: event.kind,
          deploymentId: event.deploymentId,
          ts: iso(event.ts),
          received: iso(event.received),
          reason: event.body.reason ?? null,
          progress: event.body.progress ?? null,
          version: event.body.version ?? null,
          detail: event.body.detail ?? null,
        })),
      };
    },
  );

  app.get(
    '/devices/:id/deployments',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: "The device's deployments, newest first",
        params: IdParams,
        response: responses({ 200: Type.Object({ items: Type.Array(DeploymentView) }) }),
      },
    },
    async (req) => ({ items: await store.deployments.forDevice((await existing(req.params.id)).id) }),
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
        response: responses({
          201: Type.Object({
            id: Type.String(),
            token: Type.String({ description: 'shown once' }),
            expires: IsoTime,
          }),
        }),
      },
    },
    async (req, reply) => {
      const { label, ttlSeconds, autoAccept } = req.body;
      const now = ctx.clock();
      const created = await store.tx(async (tx) => {
        const created = await tx.provisioning.create(label, ttlSeconds * 1000, autoAccept, now);
        await tx.audit.record(actorOf(req), 'provisioning-token.create', created.id, { label }, now);
        return created;
      });
      return reply.code(201).send({ id: created.id, token: created.secret, expires: iso(created.expires) });
    },
  );

  app.get(
    '/provisioning-tokens',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['devices'],
        summary: 'Provisioning tokens (never their secrets)',
        response: responses({ 200: Type.Object({ items: Type.Array(ProvisioningTokenView) }) }),
      },
    },
    async () => ({ items: await store.provisioning.list() }),
  );
};
