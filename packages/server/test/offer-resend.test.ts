import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { ChildServer, killChildServers } from './child-server.js';
import {
  cleanupDirs,
  endClients,
  stateMessage,
  type TestDevice,
  tempDir,
  testDevice,
  waitFor,
} from './helpers.js';

// An offer recorded in the store but lost with the broker's memory (server SIGKILLed before the
// device read it) must reach the device as soon as it is back: not after the per-device timeout.

const clients: MqttClient[] = [];
afterEach(async () => {
  await endClients(clients);
  killChildServers();
  cleanupDirs();
});

/**
 * Like the agent: persistent session, subscribes to its commands after every CONNACK
 * (`subscribeAfterMs` later: a slow link's round trip, so a message published at CONNACK time
 * cannot win the race against the SUBSCRIBE by luck).
 */
async function agentLike(
  url: string,
  d: TestDevice,
  onOffer: (deploymentId: string, attempt: number | undefined) => void,
  subscribeAfterMs = 0,
): Promise<MqttClient> {
  const c = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: d.id,
    username: d.id,
    password: d.password(),
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  c.on('error', () => {});
  c.on('message', (_t, p) => {
    const cmd = JSON.parse(p.toString());
    if (cmd.type === 'offer') onOffer(cmd.offer.signed.deploymentId, cmd.offer.signed.attempt);
  });
  clients.push(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => {
      setTimeout(
        () =>
          c.subscribe(`flotilla/v1/devices/${d.id}/commands`, { qos: 1 }, (err) =>
            err ? reject(err) : resolve(),
          ),
        subscribeAfterMs,
      );
    });
    c.once('error', reject);
  });
  return c;
}

describe('an offer lost with a SIGKILLed server', () => {
  it('is re-sent when the device reconnects and subscribes, long before the device timeout', async () => {
    const server = await ChildServer.start(tempDir());
    const shas = await server.buildTestReleases();
    const d = testDevice('TEST-ONLY-resend-0');
    await server.enroll(d);

    const before: string[] = [];
    const first = await agentLike(server.mqttUrl, d, (id) => before.push(id));
    await first.publishAsync(
      `flotilla/v1/devices/${d.id}/state`,
      JSON.stringify(stateMessage(1, { version: '1.0.0', imageSha256: shas['1.0.0'] })),
      { qos: 1 },
    );
    // The device stops reading its socket: the offer can be written but never reaches it.
    first.stream.pause();

    const rolloutId = await server.createRollout('1.1.0', {
      target: {},
      phases: [{ percent: 100 }],
      deviceTimeoutSeconds: 3600,
    });
    let offered: string | null = null;
    await waitFor(
      async () => {
        const r = await server.fetch(`/api/v1/rollouts/${rolloutId}/deployments`);
        const items = ((await r.json()) as { items: { id: string; state: string }[] }).items;
        offered = items.find((x) => x.state === 'offered')?.id ?? null;
        return offered !== null;
      },
      10_000,
      'offer recorded',
    );
    await server.kill();
    first.stream.destroy();
    expect(before).toEqual([]);

    await server.restart();
    const after: string[] = [];
    await agentLike(server.mqttUrl, d, (id, attempt) => after.push(`${id}#${attempt}`), 300);
    // The deployment's timeout is an hour and there are no retries: only the re-send can deliver it.
    await waitFor(() => after.length > 0, 10_000, 'offer re-sent after reconnect');
    // The same attempt: a device that already ended it ignores the re-send (docs/protocol.md).
    expect(after[0]).toBe(`${offered}#1`);
  }, 60_000);
});
