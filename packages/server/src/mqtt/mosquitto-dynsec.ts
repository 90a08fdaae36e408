import { randomBytes } from 'node:crypto';
import { ACL_TABLE, type DeviceChannel, deviceTopic, TOPIC_PREFIX } from '@flotilla/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import type { CredentialIssuer } from '../devices/registry.js';
import { ServerError } from '../errors.js';
import type { ExternalBrokerOptions } from './external-broker.js';

/** Mosquitto 2's dynamic-security plugin, managed over MQTT (mosquitto.org/documentation/dynamic-security). */
const CONTROL = '$CONTROL/dynamic-security/v1';
const RESPONSE = `${CONTROL}/response`;
const SERVER_ROLE = 'flotilla-server';
const REPLY_TIMEOUT_MS = 10_000;

type Acl = { acltype: string; topic: string; allow: true; priority?: number };
type Command = { command: string; [k: string]: unknown };
type DynsecClient = { username: string; roles?: { rolename: string }[] };
type Response = { command: string; error?: string; data?: unknown; correlationData?: string };

/** Sends dynamic-security commands on an MQTT connection and matches the answers (correlationData). */
export class DynsecControl {
  private readonly waiting = new Map<string, (r: Response[]) => void>();

  constructor(private readonly client: MqttClient) {}

  /** Subscribes the answers topic through `listen` (the connection's own message routing). */
  async attach(listen: (topic: string, handler: (payload: Buffer) => void) => Promise<void>): Promise<void> {
    await listen(RESPONSE, (payload) => this.onResponse(payload));
  }

  onResponse(payload: Buffer): void {
    let responses: Response[];
    try {
      responses = (JSON.parse(payload.toString('utf8')) as { responses?: Response[] }).responses ?? [];
    } catch {
      return;
    }
    const id = responses[0]?.correlationData?.split(':')[0];
    const resolve = id ? this.waiting.get(id) : undefined;
    if (!resolve) return;
    this.waiting.delete(id!);
    resolve(responses);
  }

  /** Runs the commands in order (one message: the broker applies them together); errors not in `tolerated` throw. */
  async run(commands: Command[], tolerated: readonly string[] = []): Promise<Response[]> {
    const id = randomBytes(8).toString('hex');
    const answer = new Promise<Response[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new ServerError(
            'FLOTILLA_ERR_SERVER_BROKER',
            `no answer from ${CONTROL} within ${REPLY_TIMEOUT_MS / 1000} s: load mosquitto_dynamic_security.so and give the server's broker user the dynsec admin role`,
          ),
        );
      }, REPLY_TIMEOUT_MS);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    const tagged = commands.map((c, i) => ({ ...c, correlationData: `${id}:${i}` }));
    await this.client.publishAsync(CONTROL, JSON.stringify({ commands: tagged }), { qos: 1 });
    const responses = await answer;
    const failed = responses.find((r) => r.error && !tolerated.includes(r.error));
    if (failed)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_BROKER',
        `Mosquitto dynamic security refused ${failed.command}: ${failed.error}`,
      );
    return responses;
  }
}

/** The ACL of one role, from protocol's table: `who` = a device id (its own topics) or the server (all devices). */
export function dynsecAcls(who: { deviceId: string } | 'server'): Acl[] {
  const topic = (c: DeviceChannel) =>
    who === 'server' ? `${TOPIC_PREFIX}/devices/+/${c}` : deviceTopic(who.deviceId, c);
  const side = who === 'server' ? ACL_TABLE.server : ACL_TABLE.device;
  const subscribe = who === 'server' ? 'subscribePattern' : 'subscribeLiteral';
  return [
    ...side.publish.map((c) => ({ acltype: 'publishClientSend', topic: topic(c), allow: true as const })),
    ...side.subscribe.flatMap((c) => [
      { acltype: subscribe, topic: topic(c), allow: true as const },
      { acltype: 'publishClientReceive', topic: topic(c), allow: true as const },
    ]),
  ];
}

const deviceRole = (deviceId: string) => `flotilla-device-${deviceId}`;

/**
 * Device credentials in Mosquitto's dynamic-security plugin: each accepted device gets a broker
 * client whose user name is its id, whose client id is fixed to its id (a device with its own
 * password but another's client id is refused, so it cannot take over that device's session),
 * and one role allowing only its own topics. The password is random, returned once over the
 * registration call; Mosquitto keeps only its hash. A revoked device's client is deleted, which
 * also closes its connection.
 */
export class DynsecCredentials implements CredentialIssuer {
  constructor(private readonly control: DynsecControl) {}

  async issue(deviceId: string): Promise<{ username: string; password: string }> {
    const password = randomBytes(24).toString('base64url');
    const role = deviceRole(deviceId);
    await this.control.run(
      [
        { command: 'deleteClient', username: deviceId },
        { command: 'deleteRole', rolename: role },
        { command: 'createRole', rolename: role, acls: dynsecAcls({ deviceId }) },
        {
          command: 'createClient',
          username: deviceId,
          password,
          clientid: deviceId,
          roles: [{ rolename: role }],
        },
      ],
      ['Client not found', 'Role not found'],
    );
    return { username: deviceId, password };
  }

  /**
   * Makes the broker agree with the store: deletes the client of every device the store does not
   * accept (a revocation that could not reach the broker, a device removed while the server was
   * down), and names accepted devices that have no client (they must register again for a
   * password). Only clients carrying their own `flotilla-device-<id>` role are Flotilla's; other
   * broker users are left alone.
   */
  async reconcile(
    acceptedIds: () => Promise<string[]>,
  ): Promise<{ removed: string[]; withoutClient: string[] }> {
    const [listing] = await this.control.run([
      { command: 'listClients', verbose: true, count: -1, offset: 0 },
    ]);
    const clients = (listing?.data as { clients?: DynsecClient[] } | undefined)?.clients ?? [];
    const deviceClients = clients.filter((c) => c.roles?.some((r) => r.rolename === deviceRole(c.username)));
    // Read after the listing: a client the broker listed was issued after its device was accepted.
    const accepted = await acceptedIds();
    const acceptedSet = new Set(accepted);
    const removed: string[] = [];
    for (const c of deviceClients) {
      if (acceptedSet.has(c.username)) continue;
      await this.revoke(c.username);
      removed.push(c.username);
    }
    const known = new Set(deviceClients.map((c) => c.username));
    const withoutClient = accepted.filter((id) => !known.has(id));
    return { removed, withoutClient };
  }

  async revoke(deviceId: string): Promise<void> {
    await this.control.run(
      [
        { command: 'deleteClient', username: deviceId },
        { command: 'deleteRole', rolename: deviceRole(deviceId) },
      ],
      ['Client not found', 'Role not found'],
    );
  }
}

/**
 * Gives the server's own broker user the `flotilla-server` role (publish commands, read every
 * device's reports), made or completed from protocol's table. Runs on a connection of its own
 * before the server's session connects: Mosquitto closes a client's connections when its roles
 * change, and that must not be the server's subscriber.
 */
export async function prepareDynsecServerRole(o: ExternalBrokerOptions): Promise<void> {
  const client = mqtt.connect(o.url, {
    protocolVersion: 4,
    clientId: `${o.clientId ?? 'flotilla-server'}-setup-${randomBytes(3).toString('hex')}`,
    username: o.username,
    password: o.password,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...(o.ca ? { ca: o.ca } : {}),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', (err) =>
        reject(
          new ServerError(
            'FLOTILLA_ERR_SERVER_BROKER',
            `cannot log in to the broker at ${o.url} as ${o.username}: ${err.message} (check --broker, --broker-username and --broker-password-file)`,
            { cause: err },
          ),
        ),
      );
    });
    const control = new DynsecControl(client);
    client.on('message', (topic, payload) => {
      if (topic === RESPONSE) control.onResponse(payload);
    });
    await client.subscribeAsync(RESPONSE, { qos: 0 });
    const [role, user] = await control.run(
      [
        { command: 'getRole', rolename: SERVER_ROLE },
        { command: 'getClient', username: o.username },
      ],
      ['Role not found'],
    );
    const want = dynsecAcls('server');
    const have = ((role?.data as { role?: { acls?: Acl[] } } | undefined)?.role?.acls ?? []).map(
      (a) => `${a.acltype} ${a.topic}`,
    );
    const fix: Command[] = role?.error
      ? [{ command: 'createRole', rolename: SERVER_ROLE, acls: want }]
      : want
          .filter((a) => !have.includes(`${a.acltype} ${a.topic}`))
          .map((a) => ({ command: 'addRoleACL', rolename: SERVER_ROLE, ...a }));
    if (fix.length > 0) await control.run(fix);
    const roles = (user?.data as { client?: { roles?: { rolename: string }[] } } | undefined)?.client?.roles;
    if (roles?.some((r) => r.rolename === SERVER_ROLE)) return;
    // This closes this connection (the role change): the answer may never come, so do not wait for it.
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await Promise.race([
      client.publishAsync(
        CONTROL,
        JSON.stringify({
          commands: [{ command: 'addClientRole', username: o.username, rolename: SERVER_ROLE }],
        }),
        { qos: 1 },
      ),
      closed,
    ]);
  } finally {
    client.end(true);
  }
}
