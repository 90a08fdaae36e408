import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { ServerError } from '../src/errors.js';
import { ExternalBroker } from '../src/mqtt/external-broker.js';
import { silent, waitFor } from './helpers.js';

let broker: Aedes | undefined;
let listener: Server | undefined;

afterEach(async () => {
  listener?.close();
  await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()));
  broker = undefined;
  listener = undefined;
});

describe('ExternalBroker.connect', () => {
  it("refuses with a coded BROKER error and hangs up when the broker's ACL negates the server's subscriptions", async () => {
    broker = await Aedes.createBroker({
      // An ACL that lets the server in but not read device reports: SUBACK 0x80 for each topic.
      authorizeSubscribe: (_client, _subscription, callback) => callback(null, null),
    });
    listener = createServer(broker.handle);
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const { port } = listener.address() as { port: number };
    const disconnected: string[] = [];
    broker.on('clientDisconnect', (client) => disconnected.push(client.id));

    let thrown: unknown;
    try {
      await ExternalBroker.connect(
        { url: `mqtt://127.0.0.1:${port}`, username: 'TEST-ONLY-server', password: 'TEST-ONLY-secret' },
        // The refusal comes before any report is handled: nothing of these is used.
        { ingestor: {} as never, log: silent, metrics: {} as never, limits: {} as never },
      );
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ServerError);
    expect((thrown as ServerError).code).toBe('FLOTILLA_ERR_SERVER_BROKER');
    expect((thrown as Error).message).toMatch(/ACL/);
    await waitFor(() => disconnected.includes('flotilla-server'), 10_000);
  });
});
