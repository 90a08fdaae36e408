import { randomBytes } from 'node:crypto';
import {
  type DeviceCommand,
  type Offer,
  SCHEMA_VERSION,
  type SignedOffer,
  signDocument,
} from '@flotilla/protocol';
import type { ServerKeys } from '../keys/server-keys.js';
import type { ServerLimits } from '../limits.js';
import type { Release } from '../store/repos/releases.js';
import type { Store } from '../store/store.js';

function iso(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * Builds the signed offer a device gets: the release manifest, the full image URL, and a delta
 * URL + signed descriptor when the cache holds one from exactly the image the device runs.
 * Signed by the online delta role, short-lived, addressed to one device.
 */
export class OfferBuilder {
  constructor(
    private readonly store: Store,
    private readonly keys: ServerKeys,
    private readonly limits: ServerLimits,
    private readonly publicUrl: () => string,
  ) {}

  artifactUrl(sha256: string): string {
    return `${this.publicUrl()}/api/v1/artifacts/${sha256}`;
  }

  build(p: {
    deploymentId: string;
    deviceId: string;
    release: Release;
    deviceImageSha256: string | null;
    now: number;
  }): SignedOffer {
    const offer: Offer = {
      _type: 'offer',
      schemaVersion: SCHEMA_VERSION,
      deploymentId: p.deploymentId,
      deviceId: p.deviceId,
      issued: iso(p.now),
      expires: iso(p.now + this.limits.offerTtlMs),
      release: p.release.manifest,
      full: {
        url: this.artifactUrl(p.release.imageSha256),
        size: p.release.imageSize,
        sha256: p.release.imageSha256,
      },
    };
    if (p.deviceImageSha256 && p.deviceImageSha256 !== p.release.imageSha256) {
      const d = this.store.deltas.get(p.deviceImageSha256, p.release.imageSha256);
      if (
        d?.status === 'ready' &&
        d.descriptor &&
        d.deltaSha256 &&
        Date.parse(d.descriptor.signed.expires) > p.now
      )
        offer.delta = { url: this.artifactUrl(d.deltaSha256), descriptor: d.descriptor };
    }
    return signDocument(offer, [this.keys.delta]);
  }

  command(offer: SignedOffer): DeviceCommand {
    return {
      schemaVersion: SCHEMA_VERSION,
      type: 'offer',
      commandId: `cmd_${randomBytes(8).toString('hex')}`,
      offer,
    };
  }

  cancel(deploymentId: string): DeviceCommand {
    return {
      schemaVersion: SCHEMA_VERSION,
      type: 'cancel',
      commandId: `cmd_${randomBytes(8).toString('hex')}`,
      deploymentId,
    };
  }
}
