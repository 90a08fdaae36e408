import { basisPoints } from './normalize.js';
import type { RolloutPolicy, TargetSelector } from './policy.js';
import type { DeviceSnapshot, ReleaseRef } from './types.js';
import { compareVersions } from './version-order.js';

const some = (list: readonly string[] | undefined, pred: (s: string) => boolean): boolean =>
  list === undefined || list.length === 0 || list.some(pred);

/**
 * Does a device belong to the rollout's target set? Devices already running the release and
 * devices whose hardware the release is not built for never join.
 */
export function matchesTarget(target: TargetSelector, release: ReleaseRef, device: DeviceSnapshot): boolean {
  if (device.currentVersion === release.version) return false;
  if (release.compatible.length > 0 && !release.compatible.includes(device.hardware)) return false;
  return (
    some(target.hardware, (h) => h === device.hardware) &&
    (target.tags ?? []).every((t) => device.tags.includes(t)) &&
    some(target.groups, (g) => g === device.group) &&
    some(target.versions, (v) => v === device.currentVersion) &&
    some(target.channels, (c) => c === device.channel) &&
    some(target.devices, (d) => d === device.id)
  );
}

/**
 * May the rollout deliver its release to this device at all? Never below the device's security
 * floor (the device would refuse it), and never to a device running a newer version unless the
 * policy carries `allowDowngrade` (an operator's explicit, audited choice).
 */
export function mayDeliver(policy: RolloutPolicy, release: ReleaseRef, device: DeviceSnapshot): boolean {
  if ((device.securityVersion ?? 0) > (release.securityVersion ?? 0)) return false;
  if (policy.allowDowngrade || device.currentVersion === null) return true;
  return compareVersions(device.currentVersion, release.version) <= 0;
}

/** The devices a rollout would take: in its target set and deliverable to. */
export function deliverableTargets<D extends DeviceSnapshot>(
  policy: RolloutPolicy,
  release: ReleaseRef,
  devices: readonly D[],
): D[] {
  return devices.filter((d) => matchesTarget(policy.target, release, d) && mayDeliver(policy, release, d));
}

/**
 * A stable pseudo-random order (FNV-1a of rollout id + device id): canaries differ from one
 * rollout to the next, yet the same snapshot always gives the same order.
 */
export function orderKey(rolloutId: string, deviceId: string): number {
  let h = 0x811c9dc5;
  const s = `${rolloutId}:${deviceId}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function compareDevices(rolloutId: string): (a: string, b: string) => number {
  const keys = new Map<string, number>();
  const key = (id: string) => {
    let k = keys.get(id);
    if (k === undefined) {
      k = orderKey(rolloutId, id);
      keys.set(id, k);
    }
    return k;
  };
  return (a, b) => key(a) - key(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Phase sizes for a target set of `total` devices: count phases take that many, percent phases a
 * share of the whole set rounded up (a 1 % canary of 50 devices is 1 device, not 0), each capped
 * by what is left; the last phase takes the rest.
 */
export function phaseSizes(policy: RolloutPolicy, total: number): number[] {
  let left = total;
  return policy.phases.map((phase, i) => {
    if (i === policy.phases.length - 1) return left;
    const want =
      phase.count !== undefined ? phase.count : Math.ceil((basisPoints(phase.percent ?? 0) * total) / 10_000);
    const size = Math.min(want, left);
    left -= size;
    return size;
  });
}
