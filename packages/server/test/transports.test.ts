import { missingTools } from '@flotilla/image';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/index.js';
import { aedesBroker } from './brokers.js';
import { deviceBrokerSuite } from './device-broker-suite.js';
import {
  auth,
  cleanupDirs,
  connect,
  connectDevice,
  enroll,
  eventMessage,
  startTestServer,
  testDevice,
  waitFor,
} from './helpers.js';

/** The device contract over the embedded broker's other listeners (TCP runs in mqtt-acl.test.ts). */
deviceBrokerSuite('embedded aedes over TLS (mqtts)', () => aedesBroker('tls'), { needs: ['openssl'] });
deviceBrokerSuite('embedded aedes over WebSocket (/mqtt)', () => aedesBroker('ws'));

afterAll(() => cleanupDirs());

const stored = async (server: RunningServer, id: string, eventId: string) =>
  (
    (await server.ctx.store.sql.get(
      'SELECT COUNT(*) AS n FROM device_events WHERE device_id = ? AND event_id = ?',
      [id, eventId],
    )) as { n: number }
  ).n;

describe.skipIf(missingTools(['openssl']).length > 0)('TLS listeners', () => {
  let broker: Awaited<ReturnType<typeof aedesBroker>>;
  const d = testDevice('TEST-ONLY-tls-dev');
  beforeAll(async () => {
    broker = await aedesBroker('tls');
    await enroll(broker.server, d);
  }, 30_000);
  afterAll(() => broker?.close());

  it('refuses a plain-TCP MQTT client on the TLS port', async () => {
    const port = new URL(broker.url).port;
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      clientId: d.id,
      username: d.id,
      password: d.password(),
    });
    // The TLS server answers an MQTT CONNECT with an alert and closes: refused, not left hanging.
    const outcome = await new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve('timeout'), 6000);
      c.once('connect', () => resolve('connected'));
      c.once('close', () => resolve('closed'));
      c.once('error', () => resolve('error'));
      c.once('end', () => clearTimeout(t));
    });
    c.end(true);
    expect(['closed', 'error']).toContain(outcome);
    expect(broker.server.broker!.isConnected(d.id)).toBe(false);
  });

  it('refuses a TLS client that does not trust the certificate', async () => {
    await expect(connectDevice(broker.url, d)).rejects.toThrow(/self[- ]signed|certificate/i);
  });

  it('serves MQTT over wss on the HTTPS API port: a device report is stored', async () => {
    const ws = broker.server.addresses.ws!;
    expect(ws.startsWith('wss://')).toBe(true);
    const c = await connectDevice(ws, d, { ca: broker.tls!.cert });
    await c.publishAsync(
      `flotilla/v1/devices/${d.id}/events`,
      JSON.stringify(eventMessage('wss-1', 1, 'log')),
      {
        qos: 1,
      },
    );
    await waitFor(async () => (await stored(broker.server, d.id, 'wss-1')) === 1, 5000, 'report over wss');
    await c.endAsync();
  });
});

/** Reads a Server-Sent Events response until `until` matches an event, within ms. */
async function readEvents(
  res: Response,
  until: (e: { event: string; data: Record<string, unknown> }) => boolean,
  ms: number,
): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const seen: { event: string; data: Record<string, unknown> }[] = [];
  let buf = '';
  const timer = setTimeout(() => void reader.cancel(), ms);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before the expected event; saw ${JSON.stringify(seen)}`);
      buf += decoder.decode(value, { stream: true });
      let cut = buf.indexOf('\n\n');
      while (cut >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        cut = buf.indexOf('\n\n');
        const event = /^event: (.+)$/m.exec(block)?.[1];
        const data = /^data: (.+)$/m.exec(block)?.[1];
        if (!event || !data) continue; // comments and pings
        const e = { event, data: JSON.parse(data) as Record<string, unknown> };
        seen.push(e);
        if (until(e)) return seen;
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

describe('Server-Sent Events (GET /api/v1/events)', () => {
  let server: RunningServer;
  let viewer: string;
  let device: MqttClient;
  const d = testDevice('TEST-ONLY-sse-dev');

  beforeAll(async () => {
    server = await startTestServer({ limits: { maxSseClients: 1 } });
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/v1/tokens',
      headers: auth(),
      payload: { name: 'TEST-ONLY viewer', role: 'viewer' },
    });
    viewer = res.json().token;
    await enroll(server, d);
    device = await connectDevice(server.addresses.mqtt!, d);
  });
  afterAll(async () => {
    await device?.endAsync(true);
    await server?.close();
  });

  const open = (headers: Record<string, string>, signal?: AbortSignal) =>
    fetch(`${server.addresses.api}/api/v1/events`, { headers, ...(signal ? { signal } : {}) });

  it('streams a device event, as it is stored, to a viewer token', async () => {
    const abort = new AbortController();
    const res = await open(auth(viewer), abort.signal);
    try {
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const got = readEvents(
        res,
        (e) => e.event === 'device.event' && e.data.deviceId === d.id && e.data.kind === 'healthy',
        5000,
      );
      await device.publishAsync(
        `flotilla/v1/devices/${d.id}/events`,
        JSON.stringify(eventMessage('sse-1', 1, 'healthy')),
        { qos: 1 },
      );
      const events = await got;
      expect(events.at(-1)?.data.ts).toMatch(/^\d{4}-\d\d-\d\dT/);
    } finally {
      abort.abort();
    }
  });

  it('refuses the stream without a token or with an unknown one (401)', async () => {
    for (const headers of [{}, auth('TEST-ONLY-not-a-token')]) {
      const res = await open(headers);
      expect(res.status).toBe(401);
      expect((await res.json()).error.code).toBe('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
    }
  });

  it('refuses streams past maxSseClients and frees the slot when a client leaves', async () => {
    const first = new AbortController();
    const a = await open(auth(viewer), first.signal);
    expect(a.status).toBe(200);
    const b = await open(auth(viewer));
    expect(b.status).toBe(409);
    expect((await b.json()).error.code).toBe('FLOTILLA_ERR_SERVER_CONFLICT');
    first.abort();
    let status = 0;
    await waitFor(
      async () => {
        const again = new AbortController();
        const r = await open(auth(viewer), again.signal);
        status = r.status;
        again.abort();
        return status === 200;
      },
      5000,
      'the freed slot',
    );
    expect(status).toBe(200);
  });

  it('does not serve MQTT over WebSocket on another path', async () => {
    const url = server.addresses.ws!.replace(/\/mqtt$/, '/not-mqtt');
    await expect(connect(url, { clientId: d.id, username: d.id, password: d.password() })).rejects.toThrow();
  });
});
