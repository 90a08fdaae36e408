import { connect, createServer, type Server, type Socket } from 'node:net';
import { SimError } from './errors.js';
import { createRng, type Rng } from './rng.js';

/**
 * A loopback TCP proxy that sits between some devices and the server (HTTP artifacts or MQTT)
 * and injects network faults: latency, a bandwidth cap, connections cut after some bytes,
 * connections refused, and a blackout (every connection dropped, new ones refused) for a while.
 * It works below HTTP and MQTT, so the agent's real retry, Range-resume and reconnect code is
 * what gets exercised.
 */
export interface NetFaults {
  /** Delay before each forwarded chunk (both directions). */
  latencyMs?: number;
  /** Cap on upstream→device bytes per second per connection. */
  bytesPerSecond?: number;
  /** Share (0–1) of connections cut after `dropAfterBytes` bytes were sent to the device. */
  dropShare?: number;
  /** Where the cut happens; default: a random point in the first 256 KiB (seeded). */
  dropAfterBytes?: number;
  /** Share (0–1) of new connections reset right away. */
  refuseShare?: number;
}

export interface ProxyStats {
  connections: number;
  refused: number;
  cut: number;
  bytesToDevice: number;
  bytesToServer: number;
}

export interface FaultProxy {
  readonly port: number;
  readonly host: string;
  readonly stats: ProxyStats;
  setFaults(faults: NetFaults): void;
  /** Drops every open connection and refuses new ones until `blackout(false)`. */
  blackout(on: boolean): void;
  /** Drops every open connection now (they may reconnect at once). */
  cutAll(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(opts: {
  upstreamHost: string;
  upstreamPort: number;
  faults?: NetFaults;
  seed?: number;
}): Promise<FaultProxy> {
  let faults: NetFaults = opts.faults ?? {};
  const rng: Rng = createRng(opts.seed ?? 1);
  const stats: ProxyStats = { connections: 0, refused: 0, cut: 0, bytesToDevice: 0, bytesToServer: 0 };
  const open = new Set<Socket>();
  let dark = false;

  const server: Server = createServer((client) => {
    stats.connections++;
    if (dark || (faults.refuseShare !== undefined && rng.next() < faults.refuseShare)) {
      stats.refused++;
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: opts.upstreamHost, port: opts.upstreamPort });
    open.add(client);
    open.add(upstream);
    const dropAt =
      faults.dropShare !== undefined && rng.next() < faults.dropShare
        ? (faults.dropAfterBytes ?? rng.int(1, 256 * 1024))
        : undefined;
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
    };
    const cleanup = (): void => {
      open.delete(client);
      open.delete(upstream);
    };
    client.on('close', () => {
      upstream.destroy();
      cleanup();
    });
    upstream.on('close', () => {
      client.destroy();
      cleanup();
    });
    client.on('error', kill);
    upstream.on('error', kill);
    pump(
      client,
      upstream,
      () => faults,
      undefined,
      (n) => {
        stats.bytesToServer += n;
      },
    );
    pump(
      upstream,
      client,
      () => faults,
      dropAt,
      (n) => {
        stats.bytesToDevice += n;
      },
      () => {
        stats.cut++;
        kill();
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new SimError('FLOTILLA_ERR_SIM_PROXY', err.message, { cause: err })),
    );
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new SimError('FLOTILLA_ERR_SIM_PROXY', 'no address');

  return {
    port: addr.port,
    host: '127.0.0.1',
    stats,
    setFaults(f) {
      faults = f;
    },
    blackout(on) {
      dark = on;
      if (on) for (const s of open) s.destroy();
    },
    cutAll() {
      for (const s of open) s.destroy();
    },
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Forwards src → dst chunk by chunk, honouring latency, a bandwidth cap and a cut point. */
function pump(
  src: Socket,
  dst: Socket,
  faults: () => NetFaults,
  cutAt: number | undefined,
  count: (n: number) => void,
  onCut?: () => void,
): void {
  let sent = 0;
  let pending = 0;
  let ended = false;
  src.on('data', (chunk: Buffer) => {
    const f = faults();
    let data = chunk;
    let cutNow = false;
    if (cutAt !== undefined && sent + data.length >= cutAt) {
      data = data.subarray(0, Math.max(0, cutAt - sent));
      cutNow = true;
    }
    const delay =
      (f.latencyMs ?? 0) + (f.bytesPerSecond ? Math.ceil((data.length / f.bytesPerSecond) * 1000) : 0);
    const forward = (): void => {
      if (dst.destroyed) return;
      sent += data.length;
      count(data.length);
      if (cutNow) {
        dst.write(data, () => onCut?.());
        return;
      }
      const flushed = dst.write(data);
      if (!flushed) {
        src.pause();
        dst.once('drain', () => src.resume());
      }
    };
    if (delay > 0 || cutNow) {
      src.pause();
      pending++;
      setTimeout(() => {
        pending--;
        forward();
        if (!cutNow && !dst.destroyed && dst.writableNeedDrain === false) src.resume();
        if (ended && pending === 0 && !dst.destroyed) dst.end();
      }, delay);
    } else forward();
  });
  src.on('end', () => {
    ended = true;
    if (pending === 0 && !dst.destroyed) dst.end();
  });
}
