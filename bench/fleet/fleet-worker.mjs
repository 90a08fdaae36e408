// One share of the benchmark fleet in its own process (own event loop, own 20,000-file limit):
// real agents (createAgent + MqttTransport + HttpFetcher + file state) on simulated boards.
// The parent sends the set-up over IPC; the worker pre-registers its devices' public keys through
// the admin bulk route, powers them on when told, and answers stats requests.
import { createAgentLauncher, defaultTransport, Fleet, simLimits } from '@flotilla/fleet-simulator';
import { installFastDeviceCrypto } from './device-crypto.mjs';

const BULK = 1000;

async function bulkRegister(apiUrl, token, infos) {
  for (let i = 0; i < infos.length; i += BULK) {
    const devices = infos.slice(i, i + BULK).map((d) => ({
      deviceId: d.id,
      publicKey: d.publicKeyHex,
      hardware: d.hardware,
      ...(d.tags.length ? { tags: d.tags } : {}),
    }));
    const res = await fetch(`${apiUrl}/api/v1/devices/bulk-register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ devices, status: 'accepted' }),
      signal: AbortSignal.timeout(120_000),
    });
    if (!res.ok) throw new Error(`bulk-register: ${res.status} ${(await res.text()).slice(0, 300)}`);
  }
}

function stats(fleet) {
  const phases = {};
  const states = {};
  for (const d of fleet.devices) {
    phases[d.phase] = (phases[d.phase] ?? 0) + 1;
    const s = d.agentState ?? '-';
    states[s] = (states[s] ?? 0) + 1;
  }
  return {
    bytes: fleet.bytesDownloaded(),
    fullEquivalent: fleet.fullEquivalentBytes(),
    versions: Object.fromEntries(fleet.versions()),
    phases,
    states,
    rss: process.memoryUsage().rss,
  };
}

// The bench gone (crashed or killed): stop too.
process.once('disconnect', () => process.exit(1));

process.once('message', async (o) => {
  try {
    if (o.fastCrypto) installFastDeviceCrypto();
    const fleet = await Fleet.create({
      dir: o.dir,
      count: o.count,
      idPrefix: o.idPrefix,
      hardware: o.hardware,
      baseImage: o.baseImage,
      format: o.format,
      slotSize: o.slotSize,
      trustRoot: o.trustRoot,
      launcher: createAgentLauncher({
        factoryRelease: o.factoryRelease,
        transport: defaultTransport,
        // Thousands of boards share one simulator core: a download can wait on the simulator's
        // own event loop far longer than on a real network, so the stall timeouts are longer.
        limits: {
          download: {
            ...simLimits(o.timeScale).download,
            connectTimeoutMs: o.downloadTimeoutMs,
            idleTimeoutMs: o.downloadTimeoutMs,
          },
        },
      }),
      mqtt: o.mqtt,
      artifactOrigin: o.artifactOrigin,
      timeScale: o.timeScale,
      concurrency: o.bootConcurrency,
      register: (infos) => bulkRegister(o.apiUrl, o.token, infos),
    });
    process.on('message', async (m) => {
      try {
        if (m.cmd === 'powerOn') {
          await fleet.powerOn(o.bootConcurrency);
          process.send({ re: m.id, ok: true });
        } else if (m.cmd === 'stats') {
          process.send({ re: m.id, ok: true, stats: stats(fleet) });
        } else if (m.cmd === 'close') {
          await fleet.close();
          process.send({ re: m.id, ok: true });
          process.exit(0);
        }
      } catch (err) {
        process.send({ re: m.id, ok: false, error: String(err?.stack ?? err) });
      }
    });
    process.send({ ready: true });
  } catch (err) {
    process.send({ ready: false, error: String(err?.stack ?? err) });
    process.exit(1);
  }
});
