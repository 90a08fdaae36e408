import type { Device } from '../store/repos/devices.js';
import type { Release } from '../store/repos/releases.js';

/** A stored time (ms since the epoch) as an ISO string; a time that may be absent stays null. */
function iso(ms: number): string;
function iso(ms: number | null): string | null;
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** API shapes: times as ISO strings, no secrets (device MQTT secret hashes never leave the store). */
export function presentDevice(d: Device) {
  return {
    id: d.id,
    status: d.status,
    publicKey: d.publicKey,
    hardware: d.hardware,
    tags: d.tags,
    group: d.group,
    channel: d.channel,
    version: d.version,
    imageSha256: d.imageSha256,
    securityVersion: d.securityVersion,
    activeSlot: d.activeSlot,
    agentState: d.agentState,
    deploymentId: d.deploymentId,
    lastError: d.lastError,
    online: d.online,
    lastSeen: iso(d.lastSeen),
    created: iso(d.created),
    updated: iso(d.updated),
  };
}

export function presentRelease(r: Release, withManifest = false) {
  return {
    id: r.id,
    name: r.name,
    version: r.version,
    kind: r.kind,
    securityVersion: r.securityVersion,
    compatible: r.compatible,
    image: { sha256: r.imageSha256, size: r.imageSize, url: `/api/v1/artifacts/${r.imageSha256}` },
    sbom: r.sbomSha256 ? { sha256: r.sbomSha256, url: `/api/v1/artifacts/${r.sbomSha256}` } : null,
    channels: r.channels,
    created: iso(r.created),
    ...(withManifest ? { manifest: r.manifest } : {}),
  };
}

export { iso };
