import { DeviceStateMessage, validate } from '@flotilla/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentConfigFile } from '../src/config.js';
import { type Agent, createAgent } from '../src/index.js';
import { STATE_REPORT } from '../src/limits.js';
import { MemoryFetcher } from '../src/testing.js';
import { ManualClock, Rig, settleIo } from './helpers.js';

const INTERVAL = 10_000;

describe('periodic state report (heartbeat)', () => {
  let rig: Rig | undefined;
  let agent: Agent | undefined;

  afterEach(async () => {
    await agent?.stop();
    await rig?.cleanup();
    agent = undefined;
    rig = undefined;
  });

  /** An idle agent on the in-memory link, driven by a manual clock and a scripted "random". */
  async function idleAgent(random: () => number, stateIntervalMs = INTERVAL) {
    rig = await Rig.create();
    const clock = new ManualClock();
    await rig.dev.powerOn();
    const deps = rig.dev.deps({
      transport: rig.hub.transport(rig.dev.deviceId),
      fetcher: new MemoryFetcher(),
      reboot: { reboot: async () => undefined },
      clock,
    });
    agent = createAgent({ ...rig.config, stateIntervalMs }, { ...deps, random });
    await agent.start();
    await agent.settled();
    await settleIo();
    const r = rig;
    const states = () =>
      r.hub.delivered.filter((m) => m.deviceId === r.dev.deviceId && m.channel === 'state');
    return { clock, states, hub: rig.hub, deviceId: rig.dev.deviceId };
  }

  it('an idle connected agent reports its state every stateIntervalMs', async () => {
    const { clock, states } = await idleAgent(() => 0.5);
    const atStart = states().length;
    expect(atStart).toBeGreaterThan(0); // the connect reported already
    await clock.advance(INTERVAL - 1);
    expect(states().length).toBe(atStart);
    await clock.advance(1);
    expect(states().length).toBe(atStart + 1);
    await clock.advance(3 * INTERVAL);
    expect(states().length).toBe(atStart + 4);
    // The normal state message on the normal topic, each heartbeat newer than the report before.
    const seqs = states()
      .slice(atStart - 1)
      .map((m) => validate(DeviceStateMessage, m.payload, 'state').seq);
    expect(seqs.length).toBe(5);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] as number);
    const last = validate(DeviceStateMessage, states().at(-1)?.payload, 'state');
    expect(last.agentState).toBe('Idle');
    expect(last.version).toBe('1.0.0');
  });

  it('each wait is the interval with at most ±10 % jitter', async () => {
    const draws = [0, 1, 0, 1];
    const { clock, states } = await idleAgent(() => draws.shift() ?? 0.5);
    const n = states().length;
    const low = INTERVAL * (1 - STATE_REPORT.jitter);
    const high = INTERVAL * (1 + STATE_REPORT.jitter);
    await clock.advance(low - 1);
    expect(states().length).toBe(n);
    await clock.advance(1);
    expect(states().length).toBe(n + 1);
    await clock.advance(high - 1);
    expect(states().length).toBe(n + 1);
    await clock.advance(1);
    expect(states().length).toBe(n + 2);
  });

  it('sends nothing while disconnected and reports again on reconnect', async () => {
    const { clock, states, hub, deviceId } = await idleAgent(() => 0.5);
    hub.setOnline(deviceId, false);
    await settleIo();
    const n = states().length;
    await clock.advance(5 * INTERVAL);
    expect(states().length).toBe(n);
    hub.setOnline(deviceId, true);
    await settleIo();
    expect(states().length).toBe(n + 1); // the connect reports at once
    await clock.advance(INTERVAL);
    expect(states().length).toBe(n + 2); // and the heartbeat goes on
  });

  it('stop() ends the heartbeat: no wait left pending, no report after', async () => {
    const { clock, states } = await idleAgent(() => 0.5);
    expect(clock.pending).toBe(1);
    await agent?.stop();
    expect(clock.pending).toBe(0);
    const n = states().length;
    await clock.advance(10 * INTERVAL);
    expect(states().length).toBe(n);
  });

  it('refuses an interval under 5 s with FLOTILLA_ERR_AGENT_CONFIG, in the embedder config and the config file', async () => {
    rig = await Rig.create();
    const r = rig;
    const deps = r.dev.deps({
      transport: r.hub.transport(r.dev.deviceId),
      fetcher: new MemoryFetcher(),
      reboot: { reboot: async () => undefined },
    });
    let refused: unknown;
    try {
      createAgent({ ...r.config, stateIntervalMs: STATE_REPORT.minIntervalMs - 1 }, deps);
    } catch (err) {
      refused = err;
    }
    expect((refused as { code?: string } | undefined)?.code).toBe('FLOTILLA_ERR_AGENT_CONFIG');
    const file = {
      deviceId: 'dev-1',
      hardware: 'hw',
      dataDir: 'data',
      trustDir: 'trust',
      server: { mqttUrl: 'mqtt://127.0.0.1:1883', stateIntervalMs: 4999 },
      slots: { A: { path: 'a' }, B: { path: 'b' } },
      bootloader: { kind: 'file', path: 'env' },
      reboot: { command: ['true'] },
    };
    expect(() => validate(AgentConfigFile, file, 'agent config')).toThrow();
    file.server.stateIntervalMs = STATE_REPORT.minIntervalMs;
    expect(validate(AgentConfigFile, file, 'agent config').server?.stateIntervalMs).toBe(5000);
  });
});
