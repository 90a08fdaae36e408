// Builders shared by the rollout engine tests (not a test file itself).
import {
  applyDecisions,
  applyDeviceEvent,
  type Decision,
  type DeploymentRecord,
  type DeploymentState,
  type DeviceSnapshot,
  decide,
  initialRuntime,
  normalizePolicy,
  type RolloutPolicy,
  type RolloutSnapshot,
} from '../src/rollout/index.js';

export const T0 = Date.parse('2026-03-02T10:00:00Z'); // a Monday
export const MIN = 60_000;

export function device(id: string, over: Partial<DeviceSnapshot> = {}): DeviceSnapshot {
  return {
    id,
    hardware: 'rpi4',
    tags: [],
    group: null,
    channel: 'prod',
    currentVersion: '1.0.0',
    currentImageSha256: null,
    online: true,
    lastSeen: T0,
    ...over,
  };
}

export function fleet(n: number, over: Partial<DeviceSnapshot> = {}): DeviceSnapshot[] {
  return Array.from({ length: n }, (_, i) => device(`d${String(i).padStart(3, '0')}`, over));
}

export function policy(over: Record<string, unknown> = {}): RolloutPolicy {
  return normalizePolicy({ target: {}, phases: [{}], maxConcurrent: 1000, ...over });
}

export function snapshot(p: RolloutPolicy, devices: DeviceSnapshot[]): RolloutSnapshot {
  return {
    rolloutId: 'r1',
    release: { version: '1.1.0', compatible: [] },
    runtime: initialRuntime(p),
    devices,
    deployments: [],
  };
}

/** decide + apply: one engine tick. */
export function tick(
  p: RolloutPolicy,
  s: RolloutSnapshot,
  now: number,
): { s: RolloutSnapshot; d: Decision[] } {
  const d = decide(p, s, now);
  return { s: applyDecisions(s, d, now), d };
}

export function setState(
  s: RolloutSnapshot,
  ids: string[] | ((r: DeploymentRecord) => boolean),
  state: DeploymentState,
  extra: Partial<DeploymentRecord> = {},
): RolloutSnapshot {
  const pick = typeof ids === 'function' ? ids : (r: DeploymentRecord) => ids.includes(r.deviceId);
  const picked = new Set(s.deployments.filter(pick).map((r) => r.deviceId));
  // A healthy device runs the release: its reported version follows, as the server would record.
  const devices =
    state === 'healthy'
      ? s.devices.map((d) => (picked.has(d.id) ? { ...d, currentVersion: s.release.version } : d))
      : s.devices;
  return {
    ...s,
    devices,
    deployments: s.deployments.map((r) => (picked.has(r.deviceId) ? { ...r, state, ...extra } : r)),
  };
}

/**
 * A device reports an event through the same mapping the server uses. Like the agent, it names
 * the version it is being given (`version` overrides that: a device lying or confused).
 */
export function report(
  s: RolloutSnapshot,
  id: string,
  kind: string,
  at: number,
  version?: string,
): RolloutSnapshot {
  const rec = s.deployments.find((r) => r.deviceId === id);
  const named = version ?? (rec?.rollback ? rec.rollback.toVersion : s.release.version);
  const next = rec ? applyDeviceEvent(rec, { kind, at, version: named }, s.release.version) : null;
  const runs = kind === 'healthy' && next ? named : null;
  return {
    ...s,
    devices: runs ? s.devices.map((d) => (d.id === id ? { ...d, currentVersion: runs } : d)) : s.devices,
    deployments: s.deployments.map((r) => (r.deviceId === id ? (next ?? r) : r)),
  };
}

export function setDevices(s: RolloutSnapshot, f: (d: DeviceSnapshot) => DeviceSnapshot): RolloutSnapshot {
  return { ...s, devices: s.devices.map(f) };
}

export const ofType = <K extends Decision['type']>(d: Decision[], type: K) =>
  d.filter((x): x is Extract<Decision, { type: K }> => x.type === type);

export const inPhase = (s: RolloutSnapshot, phase: number) =>
  s.deployments.filter((r) => r.phase === phase).map((r) => r.deviceId);

/** Every offered device of `phases` reaches `state` (healthy, failed, ...). */
export function finish(s: RolloutSnapshot, state: DeploymentState, phases?: number[]): RolloutSnapshot {
  return setState(
    s,
    (r) => r.state === 'offered' && (phases === undefined || phases.includes(r.phase)),
    state,
  );
}
