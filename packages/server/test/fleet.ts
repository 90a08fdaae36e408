import { randomBytes } from 'node:crypto';
import type { DeviceCommand } from '@flotilla/protocol';
import type { MqttClient } from 'mqtt';
import type { FlotillaServer, RunningServer } from '../src/index.js';
import {
  auth,
  connectDevice,
  enroll,
  eventMessage,
  stateMessage,
  type TestDevice,
  testDevice,
  waitFor,
} from './helpers.js';

/** A TEST-ONLY raw partition image; `variant` changes a few blocks (so a delta is small). */
export function testImage(variant: number, size = 512 * 1024): Buffer<ArrayBuffer> {
  const b = Buffer.alloc(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x >> 16;
  }
  for (let v = 0; v < variant; v++) b.write(`TEST-ONLY variant ${variant}`, 4096 * (7 + v * 13));
  return b;
}

/** Uploads an image for the server to hash and sign as a release. */
export async function uploadRelease(
  server: FlotillaServer,
  version: string,
  image: Buffer,
  securityVersion = 1,
) {
  const res = await server.app.inject({
    method: 'POST',
    url: `/api/v1/releases/build?name=TEST-ONLY-os&version=${version}&securityVersion=${securityVersion}&compatible=TEST-ONLY-board&format=raw&partitionSize=${image.length}&input=image`,
    headers: { ...auth(), 'content-type': 'application/octet-stream' },
    payload: image,
  });
  if (res.statusCode !== 201) throw new Error(`upload ${version}: ${res.body}`);
  return res.json() as { version: string; image: { sha256: string; size: number } };
}

/** A simulated device on a real MQTT connection: reports state, receives commands, reports events. */
export class SimDevice {
  readonly commands: DeviceCommand[] = [];
  client!: MqttClient;
  private seq = 0;
  version: string;
  imageSha256: string;

  constructor(
    readonly key: TestDevice,
    version: string,
    imageSha256: string,
  ) {
    this.version = version;
    this.imageSha256 = imageSha256;
  }

  static create(id: string, version: string, imageSha256: string): SimDevice {
    return new SimDevice(testDevice(id), version, imageSha256);
  }

  /** `n` devices named `${prefix}-0` … all running the same release. */
  static fleet(prefix: string, n: number, version: string, imageSha256: string): SimDevice[] {
    return Array.from({ length: n }, (_, i) => SimDevice.create(`${prefix}-${i}`, version, imageSha256));
  }

  get id(): string {
    return this.key.id;
  }

  async connect(url: string): Promise<void> {
    this.client = await connectDevice(url, this.key);
    this.client.on('message', (_t, payload) =>
      this.commands.push(JSON.parse(payload.toString()) as DeviceCommand),
    );
    await this.client.subscribeAsync(`flotilla/v1/devices/${this.id}/commands`, { qos: 1 });
    await this.reportState();
  }

  async reportState(): Promise<void> {
    await this.client.publishAsync(
      `flotilla/v1/devices/${this.id}/state`,
      JSON.stringify(stateMessage(++this.seq, { version: this.version, imageSha256: this.imageSha256 })),
      { qos: 1 },
    );
  }

  async event(kind: string, deploymentId: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.client.publishAsync(
      `flotilla/v1/devices/${this.id}/events`,
      JSON.stringify(
        eventMessage(`ev-${randomBytes(6).toString('hex')}`, ++this.seq, kind, { deploymentId, ...extra }),
      ),
      { qos: 1 },
    );
  }

  async nextOffer(timeoutMs = 10_000) {
    await waitFor(() => this.commands.some((c) => c.type === 'offer'), timeoutMs, `offer to ${this.id}`);
    const i = this.commands.findIndex((c) => c.type === 'offer');
    return this.commands.splice(i, 1)[0] as Extract<DeviceCommand, { type: 'offer' }>;
  }

  /** Walks an offer through to `healthy` (or rolled-back) like the agent would. */
  async install(
    deploymentId: string,
    outcome: 'healthy' | 'rolled-back',
    newVersion: string,
    newSha: string,
  ) {
    for (const kind of ['offer-accepted', 'downloaded', 'installed', 'rebooting'])
      await this.event(kind, deploymentId);
    if (outcome === 'healthy') {
      this.version = newVersion;
      this.imageSha256 = newSha;
      await this.event('healthy', deploymentId, { version: newVersion });
    } else {
      await this.event('rolled-back', deploymentId, {
        reason: { code: 'HEALTH', message: 'app.service failed: exit code 3' },
      });
    }
    await this.reportState();
  }
}

/** Enrols and connects every device, then waits until the server holds each one's reported image. */
export async function connectFleet(server: RunningServer, fleet: SimDevice[]): Promise<void> {
  for (const d of fleet) {
    await enroll(server, d.key);
    await d.connect(server.addresses.mqtt!);
  }
  await waitFor(
    async () =>
      (await Promise.all(fleet.map((d) => server.ctx.store.devices.get(d.id)))).every(
        (row, i) => row?.imageSha256 === fleet[i]!.imageSha256,
      ),
    5000,
    'states',
  );
}

/** Waits for the first device of the fleet to get an offer (without consuming anyone else's). */
export async function firstOffered(fleet: SimDevice[], timeoutMs = 20_000) {
  await waitFor(
    () => fleet.some((d) => d.commands.some((c) => c.type === 'offer')),
    timeoutMs,
    'a first offer',
  );
  const d = fleet.find((x) => x.commands.some((c) => c.type === 'offer'))!;
  return { d, cmd: await d.nextOffer() };
}
