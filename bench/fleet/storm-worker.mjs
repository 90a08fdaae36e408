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
/** A pre-signed first password is used only this long after 'prepare' (the server's window is 5 min). */
const SIGNED_AHEAD_MAX_AGE_MS = 60_000;
const KEEPALIVE_S = 60;

/**
 * A source address and port for each connection attempt. 19,000 connections from one address to
 * one broker port exhaust the even half of the kernel's ephemeral range (32768–60999), after which
 * every connect() searches the port space: ~4 CPU-seconds of kernel time per storm on this machine
 * (1 s with explicit ports), stolen from the broker it should measure. Real devices each have an
 * address of their own; here each load process takes its own block of loopback addresses
 * (127.<10 + index>.0.1–8) and hands out (address, port) pairs in turn, never the same pair twice
 * in a run, from a random starting point so a run right after another does not meet its leftovers.
 */
function sourceEndpoints(index) {
  const ADDRESSES = 8;
  const PORTS = 50_000; // 10000–59999
  let next = Math.floor(Math.random() * ADDRESSES * PORTS);
  return () => {
    const n = next++ % (ADDRESSES * PORTS);
    return {
      localAddress: `127.${10 + index}.0.${1 + (n % ADDRESSES)}`,
      localPort: 10_000 + Math.floor(n / ADDRESSES),
    };
  };
}

function stateReport(seq = 1) {
  const msg = {
    schemaVersion: SCHEMA_VERSION,
    type: 'state',
    seq,
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

/**
 * Splits a byte stream into MQTT frames (type, flags, body). The broker sends a device only small
 * frames here (CONNACK, SUBACK, PUBACK, PINGRESP, now and then a PUBLISH): a hand-rolled reader
 * costs the load generator far less than a full parser per connection.
 */
function frameReader(onFrame) {
  let pending = null;
  return (chunk) => {
    const b = pending ? Buffer.concat([pending, chunk]) : chunk;
    let i = 0;
    for (;;) {
      let len = 0;
      let mul = 1;
      let j = i + 1;
      for (; j < b.length && j < i + 5; j++) {
        len += (b[j] & 0x7f) * mul;
        mul *= 128;
        if ((b[j] & 0x80) === 0) break;
      }
      if (j >= b.length || b.length < j + 1 + len) break; // incomplete header or body
      onFrame(b[i] >> 4, b[i] & 0x0f, b.subarray(j + 1, j + 1 + len));
      i = j + 1 + len;
    }
    pending = i < b.length ? b.subarray(i) : null;
  };
}

const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBACK = 9;

class Device {
  constructor(id, worker) {
    this.id = id;
    this.w = worker;
    this.key = worker.mode === 'flotilla' ? fastKeyPair() : null;
    this.secret = worker.mode === 'mosquitto' ? randomBytes(18).toString('base64url') : null;
    // What the device sends after CONNECT never changes: built once.
    this.subscribeFrame = mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: deviceTopic(id, 'commands'), qos: 1 }],
    });
    this.publishFrame = mqttPacket.generate({
      cmd: 'publish',
      topic: deviceTopic(id, 'state'),
      payload: worker.state,
      qos: 1,
      messageId: 2,
      retain: false,
      dup: false,
    });
    this.signed = null;
    this.socket = null;
    this.attempts = 0;
    this.doneAt = 0;
    this.connackAt = 0;
    this.timer = null;
    /** Periodic state reports once in (`go` with reportEveryMs), and their sequence. */
    this.reportTimer = null;
    this.seq = 1;
    this.startedAt = 0;
    /** Still connected from the previous round when this one started (see 'go'). */
    this.stayed = false;
  }

  /** A fresh password per attempt; the first one of a round may be signed ahead (see 'prepare'). */
  password() {
    if (this.secret) return this.secret;
    const ready = this.signed;
    this.signed = null;
    return ready ?? makeDevicePassword(this.id, this.key, new Date(), randomBytes(16).toString('hex'));
  }

  /** The next periodic state report at QoS 1 (message ids 3…65535 in turn; 1 and 2 are the login's). */
  report(s) {
    this.seq++;
    s.write(
      mqttPacket.generate({
        cmd: 'publish',
        topic: deviceTopic(this.id, 'state'),
        payload: stateReport(this.seq),
        qos: 1,
        messageId: 3 + (this.seq % 65_000),
        retain: false,
        dup: false,
      }),
    );
  }

  start() {
    this.attempts++;
    this.startedAt = Date.now();
    const w = this.w;
    const s = connect({ host: w.broker.host, port: w.broker.port, ...w.source() });
    this.socket = s;
    s.setNoDelay(true);
    let step = 'connack';
    const fail = (why) => {
      if (this.socket !== s) return;
      this.socket = null;
      clearTimeout(this.timer);
      clearInterval(this.reportTimer);
      s.destroy();
      this.doneAt = 0;
      this.connackAt = 0;
      // A connection that stayed and is cut now: its next login is one of this round's.
      if (this.stayed) {
        this.stayed = false;
        this.attempts = 0;
      }
      w.failures[why] = (w.failures[why] ?? 0) + 1;
      if (w.stopped) return;
      // The agent's backoff: equal jitter, 1 s base, doubling per failed attempt.
      const cap = Math.min(120_000, 1000 * 2 ** Math.min(this.attempts - 1, 16));
      setTimeout(() => this.start(), cap / 2 + (Math.random() * cap) / 2);
    };
    this.timer = setTimeout(() => fail(`timeout-${step}`), CONNECT_TIMEOUT_MS);
    const read = frameReader((type, flags, body) => {
      if (type === CONNACK) {
        if (body[1] !== 0) return fail(`connack-${body[1]}`);
        this.connackAt = Date.now(); // connected and authenticated
        step = 'suback';
        s.write(this.subscribeFrame);
      } else if (type === SUBACK) {
        if (body[2] !== 1 && body[2] !== 0) return fail('subscribe-denied');
        step = 'puback';
        s.write(this.publishFrame);
      } else if (type === PUBACK) {
        w.acked++;
        if (step === 'in') return; // a periodic report's
        clearTimeout(this.timer);
        step = 'in';
        this.doneAt = Date.now();
        if (w.reportEveryMs > 0) {
          // Reports spread over the interval (a random phase per device), as a fleet's clocks are.
          const first = setTimeout(() => {
            if (this.socket !== s) return;
            this.report(s);
            this.reportTimer = setInterval(() => this.report(s), w.reportEveryMs);
          }, Math.random() * w.reportEveryMs);
          this.reportTimer = first;
        }
      } else if (type === PUBLISH && ((flags >> 1) & 3) === 1) {
        const at = 2 + body.readUInt16BE(0); // after the topic: the message id
        s.write(Buffer.from([0x40, 2, body[at], body[at + 1]]));
      }
    });
    s.on('data', read);
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

// The parent gone (or done with us): nothing left to do.
process.once('disconnect', () => process.exit(0));

process.once('message', (o) => {
  if (o.mode === 'flotilla') installFastDeviceCrypto(); // the devices' own signing, not the server's
  const w = {
    mode: o.mode,
    broker: o.broker,
    state: stateReport(),
    source: sourceEndpoints(o.index),
    failures: {},
    stopped: true,
    /** PUBACKs received (logins' reports and periodic ones) and the periodic reports' interval. */
    acked: 0,
    reportEveryMs: 0,
  };
  const devices = [];
  for (let i = 0; i < o.count; i++)
    devices.push(new Device(`${o.idPrefix}-${String(i).padStart(5, '0')}`, w));
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
    if (m.cmd === 'prepare') {
      // Each device signs its first password of the next round now: a real board signs on its own
      // CPU, not on the machine that measures the broker (retries still sign on the spot).
      for (const d of devices) {
        d.signed = null;
        if (d.key) d.signed = d.password();
      }
      reply(m);
    } else if (m.cmd === 'target') {
      w.broker = m.broker;
      reply(m);
    } else if (m.cmd === 'go') {
      // spreadMs 0: every socket opened in one synchronous pass. Otherwise each device's first
      // attempt falls at a uniform random instant within spreadMs, as the agents' jittered
      // reconnects do after a broker goes away.
      w.stopped = false;
      w.failures = {};
      w.reportEveryMs = m.reportEveryMs ?? 0;
      for (const d of devices) {
        // Still connected (its node survived): it stays in, keeps its keepalive, and is not one
        // of this round's logins. Clearing its doneAt once stopped its pings, so the broker cut it
        // 1.5 × keepalive later and the round waited ~90 s for logins that were never needed.
        d.stayed = d.socket !== null && d.doneAt > 0;
        if (d.stayed) continue;
        d.attempts = 0;
        d.doneAt = 0;
        d.connackAt = 0;
        if (d.socket) continue;
        const delayMs = Math.random() * m.spreadMs;
        // A password signed ahead for a start minutes away would be past the server's time
        // window (5 min) by then: that device signs on the spot, as a real one would.
        if (delayMs > SIGNED_AHEAD_MAX_AGE_MS) d.signed = null;
        if (m.spreadMs > 0) setTimeout(() => d.start(), delayMs);
        else d.start();
      }
      reply(m);
    } else if (m.cmd === 'stats') {
      let attempts = 0;
      const doneAt = [];
      const loginMs = [];
      let lastConnack = 0;
      let stayed = 0;
      for (const d of devices) {
        if (d.stayed) {
          stayed++;
          continue;
        }
        attempts += d.attempts;
        if (d.doneAt) {
          doneAt.push(d.doneAt);
          loginMs.push(d.doneAt - d.startedAt);
        }
        lastConnack = Math.max(lastConnack, d.connackAt);
      }
      const cpu = process.cpuUsage();
      reply(m, {
        stats: {
          in: doneAt.length + stayed,
          stayed,
          attempts,
          failures: w.failures,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          acked: w.acked,
          ...(m.times ? { doneAt, lastConnack, loginMs } : {}),
        },
      });
    } else if (m.cmd === 'hold') {
      // Stop reconnecting (the broker is about to be killed); sockets die with it.
      w.stopped = true;
      reply(m);
    } else if (m.cmd === 'close') {
      w.stopped = true;
      for (const d of devices) clearInterval(d.reportTimer);
      // RST, not FIN: 19,000 sockets in TIME_WAIT would hold the ephemeral ports of the next run.
      for (const d of devices) d.socket?.resetAndDestroy();
      reply(m);
      process.disconnect(); // the process ends (and writes a CPU profile if asked)
    }
  });
  process.send({ ready: true, credentials });
});
