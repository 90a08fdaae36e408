// One share of the reconnect-storm load: `count` devices, each one raw MQTT 3.1.1 connection that
// does exactly what the agent does when it (re)connects — CONNECT (clean session off, the agent's
// signed password or, against Mosquitto, a static secret), SUBSCRIBE to its commands topic at QoS 1,
// then PUBLISH its state report at QoS 1 — and counts as "in" once the PUBACK arrives: connected,
// authenticated, reachable and heard. No agent state machine: this bench measures the broker side,
// so the load generator must cost as little CPU as possible (frames are built with mqtt-packet).
// A refused or timed-out attempt retries with the agent's backoff (equal jitter, 1 s base).
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import {
  DeviceStateMessage,
  deviceTopic,
  makeDevicePassword,
  SCHEMA_VERSION,
  toHex,
  validate,
} from '@flotilla/protocol';
import { mosquittoHash } from '@flotilla/server';
import mqttPacket from 'mqtt-packet';
import { fastKeyPair, installFastDeviceCrypto } from './device-crypto.mjs';

const CONNECT_TIMEOUT_MS = 20_000; // the agent's own
const KEEPALIVE_S = 60;

function stateReport() {
  const msg = {
    schemaVersion: SCHEMA_VERSION,
    type: 'state',
    seq: 1,
    ts: new Date().toISOString(),
    version: '1.0.0',
    imageSha256: null,
    securityVersion: 0,
    activeSlot: 'A',
    agentState: 'Idle',
    deploymentId: null,
    lastError: null,
  };
  validate(DeviceStateMessage, msg, 'state');
  return Buffer.from(JSON.stringify(msg));
}

class Device {
  constructor(id, worker) {
    this.id = id;
    this.w = worker;
    this.key = worker.mode === 'flotilla' ? fastKeyPair() : null;
    this.secret = worker.mode === 'mosquitto' ? randomBytes(18).toString('base64url') : null;
    this.socket = null;
    this.attempts = 0;
    this.doneAt = 0;
    this.timer = null;
  }

  password() {
    if (this.secret) return this.secret;
    return makeDevicePassword(this.id, this.key, new Date(), randomBytes(16).toString('hex'));
  }

  start() {
    this.attempts++;
    const w = this.w;
    const s = connect({ host: w.broker.host, port: w.broker.port });
    this.socket = s;
    s.setNoDelay(true);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let step = 'connack';
    const fail = (why) => {
      if (this.socket !== s) return;
      this.socket = null;
      clearTimeout(this.timer);
      s.destroy();
      this.doneAt = 0;
      w.failures[why] = (w.failures[why] ?? 0) + 1;
      if (w.stopped) return;
      // The agent's backoff: equal jitter, 1 s base, doubling per failed attempt.
      const cap = Math.min(120_000, 1000 * 2 ** Math.min(this.attempts - 1, 16));
      setTimeout(() => this.start(), cap / 2 + (Math.random() * cap) / 2);
    };
    this.timer = setTimeout(() => fail(`timeout-${step}`), CONNECT_TIMEOUT_MS);
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') {
        if (p.returnCode !== 0) return fail(`connack-${p.returnCode}`);
        step = 'suback';
        s.write(
          mqttPacket.generate({
            cmd: 'subscribe',
            messageId: 1,
            subscriptions: [{ topic: deviceTopic(this.id, 'commands'), qos: 1 }],
          }),
        );
      } else if (p.cmd === 'suback') {
        if (p.granted[0] !== 1 && p.granted[0] !== 0) return fail('subscribe-denied');
        step = 'puback';
        s.write(
          mqttPacket.generate({
            cmd: 'publish',
            topic: deviceTopic(this.id, 'state'),
            payload: w.state,
            qos: 1,
            messageId: 2,
            retain: false,
            dup: false,
          }),
        );
      } else if (p.cmd === 'puback') {
        clearTimeout(this.timer);
        step = 'in';
        this.doneAt = Date.now();
      } else if (p.cmd === 'publish' && p.qos === 1) {
        s.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId }));
      }
    });
    parser.on('error', () => fail('protocol-error'));
    s.on('data', (b) => parser.parse(b));
    s.on('error', (err) => fail(err.code ?? 'socket-error'));
    s.on('close', () => fail(`closed-at-${step}`));
    s.on('connect', () => {
      s.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: false,
          clientId: this.id,
          keepalive: KEEPALIVE_S,
          username: this.id,
          password: Buffer.from(this.password()),
        }),
      );
    });
  }
}

process.once('message', (o) => {
  if (o.mode === 'flotilla') installFastDeviceCrypto(); // the devices' own signing, not the server's
  const w = {
    mode: o.mode,
    broker: o.broker,
    state: stateReport(),
    failures: {},
    stopped: true,
  };
  const devices = [];
  for (let i = 0; i < o.count; i++)
    devices.push(new Device(`${o.idPrefix}-${String(i).padStart(5, '0')}`, w));
  // Sign once per device now: the first signature parses the device's private key (a real board
  // has done that long before a storm); in the storm each device then pays one signature.
  for (const d of devices) d.password();
  const credentials = devices.map((d) =>
    d.key
      ? { deviceId: d.id, publicKey: toHex(d.key.publicKey) }
      : { deviceId: d.id, hash: mosquittoHash(d.secret) },
  );
  // Keepalive for the connections that are in (the broker drops a silent client after 1.5 × 60 s).
  const ping = mqttPacket.generate({ cmd: 'pingreq' });
  setInterval(() => {
    for (const d of devices) if (d.doneAt && d.socket) d.socket.write(ping);
  }, 30_000).unref();
  const reply = (m, extra = {}) => process.send({ re: m.id, ok: true, ...extra });
  process.on('message', (m) => {
    if (m.cmd === 'target') {
      w.broker = m.broker;
      reply(m);
    } else if (m.cmd === 'go') {
      // spreadMs 0: every socket opened in one synchronous pass. Otherwise each device's first
      // attempt falls at a uniform random instant within spreadMs, as the agents' jittered
      // reconnects do after a broker goes away.
      w.stopped = false;
      w.failures = {};
      for (const d of devices) {
        d.attempts = 0;
        d.doneAt = 0;
        if (d.socket) continue;
        if (m.spreadMs > 0) setTimeout(() => d.start(), Math.random() * m.spreadMs);
        else d.start();
      }
      reply(m);
    } else if (m.cmd === 'stats') {
      let attempts = 0;
      const doneAt = [];
      for (const d of devices) {
        attempts += d.attempts;
        if (d.doneAt) doneAt.push(d.doneAt);
      }
      const cpu = process.cpuUsage();
      reply(m, {
        stats: {
          in: doneAt.length,
          attempts,
          failures: w.failures,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          ...(m.times ? { doneAt } : {}),
        },
      });
    } else if (m.cmd === 'hold') {
      // Stop reconnecting (the broker is about to be killed); sockets die with it.
      w.stopped = true;
      reply(m);
    } else if (m.cmd === 'close') {
      w.stopped = true;
      // RST, not FIN: 19,000 sockets in TIME_WAIT would hold the ephemeral ports of the next run.
      for (const d of devices) d.socket?.resetAndDestroy();
      reply(m);
      process.disconnect(); // nothing left to run: the process ends (and writes a profile if asked)
    }
  });
  process.send({ ready: true, credentials });
});
