import { AGENT_STATES } from '@flotilla/protocol';
import { SimError } from './errors.js';
import type { NetFaults } from './net-proxy.js';
import { createRng, pickIndices } from './rng.js';

/**
 * Fault profiles: what goes wrong on which devices. A profile targets explicit device ids or a
 * share of the fleet (chosen with a seed, so a run can be repeated); profiles never overlap, so
 * every device has at most one and the summary can say which fault a device saw.
 */
export interface PowerCutFault {
  /** Cut while the agent is in one of these states (default: any state of an update). */
  inStates?: string[];
  /** The cut comes this long (random in [min, max], seeded) after the agent persisted the state. */
  delayMs?: [number, number];
  /** How many times a device loses power during one run (default 1). */
  times?: number;
  /** How long the device stays dark before it powers on again. */
  offMs?: number;
}

export interface FaultProfile {
  name: string;
  /** Share of the fleet (0–1) that gets this profile. */
  share?: number;
  /** Or these devices, by id. */
  devices?: string[];
  powerCut?: PowerCutFault;
  /** Artifact downloads go through a loopback proxy with these faults. */
  network?: NetFaults;
  /** The MQTT connection goes through a loopback proxy with these faults. */
  mqttNetwork?: NetFaults;
  /** Health checks fail with this reason whatever the booted image says. */
  failHealth?: string;
  /** The device fails to boot any newly installed slot (the bootloader counts and falls back). */
  bootFailure?: boolean;
}

/** The agent's states from an accepted offer up to the commit: where an update is in progress. */
export const UPDATE_STATES: readonly string[] = AGENT_STATES.slice(
  AGENT_STATES.indexOf('Offered'),
  AGENT_STATES.indexOf('Committed') + 1,
);
/** Parses a CLI fault spec `name:share`, e.g. `power-cut:0.1`, `slow-network:0.2`. */
export function parseFaultSpec(spec: string): FaultProfile {
  const m = /^([a-z-]+):(0(?:\.\d+)?|1(?:\.0+)?)$/.exec(spec);
  if (!m)
    throw new SimError(
      'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
      `fault '${spec}' (use NAME:SHARE, e.g. power-cut:0.1)`,
    );
  const preset = FAULT_PRESETS[m[1] as string];
  if (!preset)
    throw new SimError(
      'FLOTILLA_ERR_SIM_BAD_ARGUMENT',
      `fault '${m[1]}' (known: ${Object.keys(FAULT_PRESETS).join(', ')})`,
    );
  return { ...preset, name: m[1] as string, share: Number(m[2]) };
}

export const FAULT_PRESETS: Record<string, Omit<FaultProfile, 'name'>> = {
  'power-cut': { powerCut: { delayMs: [0, 400], times: 1, offMs: 200 } },
  'flaky-network': { network: { dropShare: 0.5, refuseShare: 0.2 } },
  'slow-network': { network: { bytesPerSecond: 2 * 1024 * 1024, latencyMs: 20 } },
  'dropped-download': { network: { dropShare: 1 } },
  'failing-health': { failHealth: 'simulated: health probe http://127.0.0.1/health failed' },
  'boot-failure': { bootFailure: true },
  'flaky-mqtt': { mqttNetwork: { dropShare: 0.3 } },
};

/** Assigns profiles to devices; returns device id → profile. Deterministic for a seed. */
export function assignFaults(
  deviceIds: readonly string[],
  profiles: readonly FaultProfile[],
  seed: number,
): Map<string, FaultProfile> {
  const out = new Map<string, FaultProfile>();
  const rng = createRng(seed).fork('faults');
  for (const p of profiles) {
    if (p.devices)
      for (const id of p.devices) {
        if (!deviceIds.includes(id))
          throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `fault ${p.name}: unknown device ${id}`);
        if (out.has(id))
          throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `device ${id} has two fault profiles`);
        out.set(id, p);
      }
  }
  for (const p of profiles) {
    if (p.share === undefined) continue;
    if (!(p.share >= 0 && p.share <= 1))
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `fault ${p.name}: share ${p.share}`);
    const free = deviceIds.filter((id) => !out.has(id));
    const want = Math.round(p.share * deviceIds.length);
    for (const i of pickIndices(rng.fork(p.name), free.length, want)) out.set(free[i] as string, p);
  }
  return out;
}
