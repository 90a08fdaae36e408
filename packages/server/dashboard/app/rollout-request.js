/**
 * The new-rollout form's state and its translation into the API's rollout request (the body of
 * POST /rollouts and POST /rollouts/preview). Plain data, no DOM: the unit tests run it in Node.
 */

export const newPhase = (name, kind, size) => ({
  name,
  kind,
  size,
  successThreshold: 100,
  errorThreshold: 0,
  minExecuted: 1,
  soakSeconds: 0,
  requireApproval: false,
});

export const initialForm = (release) => ({
  name: '',
  release: release ?? '',
  target: { hardware: '', tags: '', groups: '', versions: '', channels: [], devices: '' },
  membership: 'static',
  joinPhase: 'current',
  phases: [newPhase('canary', 'count', 1), newPhase('everyone', 'percent', 100)],
  maxConcurrent: 50,
  deviceTimeoutSeconds: 7200,
  ratePerMinute: '',
  windows: [],
  autoRollback: false,
});

const list = (text) => [...new Set(text.split(/[\s,]+/).filter(Boolean))];
const num = (v) => (v === '' || v === null || v === undefined ? undefined : Number(v));

/** The form as the API's rollout request (POST /rollouts and /rollouts/preview take the same body). */
export function rolloutRequest(f) {
  const target = { membership: f.membership, joinPhase: f.joinPhase };
  for (const k of ['hardware', 'tags', 'groups', 'versions', 'devices']) {
    const values = list(f.target[k]);
    if (values.length) target[k] = values;
  }
  if (f.target.channels.length) target.channels = f.target.channels;
  const last = f.phases.length - 1;
  const policy = {
    target,
    phases: f.phases.map((p, i) => ({
      ...(p.name.trim() ? { name: p.name.trim() } : {}),
      // The last phase takes whatever is left, so its size is always "the rest".
      ...(i === last
        ? { percent: 100 }
        : p.kind === 'count'
          ? { count: num(p.size) }
          : { percent: num(p.size) }),
      successThreshold: num(p.successThreshold),
      errorThreshold: num(p.errorThreshold),
      minExecuted: num(p.minExecuted),
      soakSeconds: num(p.soakSeconds),
      requireApproval: p.requireApproval,
    })),
    maxConcurrent: num(f.maxConcurrent),
    deviceTimeoutSeconds: num(f.deviceTimeoutSeconds),
    maintenanceWindows: f.windows.map((w) => ({
      days: w.days,
      start: w.start,
      durationMinutes: num(w.durationMinutes),
      utcOffset: w.utcOffset,
    })),
    autoRollback: f.autoRollback,
  };
  if (f.ratePerMinute !== '') policy.rate = { kind: 'constant', perMinute: num(f.ratePerMinute) };
  return { ...(f.name.trim() ? { name: f.name.trim() } : {}), release: f.release, policy };
}
