import { randomBytes } from 'node:crypto';
import {
  type DeviceCommand,
  type Offer,
  SCHEMA_VERSION,
  type SignedDelta,
  type SignedOffer,
} from '@flotilla/protocol';
import type { UrlSigner } from '../artifacts/url-signer.js';
import { descriptorNeedsRenewal, renewDescriptor } from '../deltas/descriptor.js';
import { signDocumentFast } from '../keys/fast-sign.js';
import type { ServerKeys } from '../keys/server-keys.js';
import type { ServerLimits } from '../limits.js';
import { countSigning, type Metrics } from '../metrics.js';
import type { Release } from '../store/repos/releases.js';
import type { Store } from '../store/store.js';

/** The path artifacts are served under; signatures cover it. */
export function artifactPath(sha256: string): string {
  return `/api/v1/artifacts/${sha256}`;
}

function iso(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** A cached delta an offer can name: its artifact and its (current) signed descriptor. */
interface ReadyDelta {
  deltaSha256: string;
  descriptor: SignedDelta;
}

/**
 * The deltas already looked up for offers built with the same `now` and store (one rollout
 * pass), by `from>to` image: null when there is none. A pass reads each pair once, not per device.
 */
export type DeltaMemo = Map<string, ReadyDelta | null>;

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
    /** The API's public address (trust root) and where devices download artifacts (the API, or nginx). */
    private readonly urls: { publicUrl: () => string; artifactBaseUrl: () => string },
    private readonly signer: UrlSigner,
    private readonly metrics?: Metrics,
  ) {}

  /** The artifact's URL signed for one device, valid for `artifactUrlTtlMs` (docs/protocol.md). */
  artifactUrl(sha256: string, deviceId: string, now: number): string {
    const path = artifactPath(sha256);
    const query = this.signer.sign(path, sha256, deviceId, now + this.limits.artifactUrlTtlMs);
    return `${this.urls.artifactBaseUrl()}${path}?${query}`;
  }

  /** `store` is the caller's (a rollout pass's transaction, or the root store). */
  async build(
    p: {
      deploymentId: string;
      /** The deployment's attempt (absent for a rollback offer). */
      attempt?: number;
      deviceId: string;
      release: Release;
      deviceImageSha256: string | null;
      now: number;
    },
    store: Store = this.store,
    deltas?: DeltaMemo,
  ): Promise<SignedOffer> {
    const offer: Offer = {
      _type: 'offer',
      schemaVersion: SCHEMA_VERSION,
      deploymentId: p.deploymentId,
      ...(p.attempt ? { attempt: p.attempt } : {}),
      deviceId: p.deviceId,
      issued: iso(p.now),
      expires: iso(p.now + this.limits.offerTtlMs),
      release: p.release.manifest,
      full: {
        url: this.artifactUrl(p.release.imageSha256, p.deviceId, p.now),
        size: p.release.imageSize,
        sha256: p.release.imageSha256,
      },
    };
    if (p.deviceImageSha256 && p.deviceImageSha256 !== p.release.imageSha256) {
      const key = `${p.deviceImageSha256}>${p.release.imageSha256}`;
      let ready = deltas?.get(key);
      if (ready === undefined) {
        ready = await this.readyDelta(store, p.deviceImageSha256, p.release.imageSha256, p.now);
        deltas?.set(key, ready);
      }
      if (ready)
        offer.delta = {
          url: this.artifactUrl(ready.deltaSha256, p.deviceId, p.now),
          descriptor: ready.descriptor,
        };
    }
    return countSigning(this.metrics, 'offer', () => signDocumentFast(offer, this.keys.delta));
  }

  /**
   * The delta from the device's image to the release, when the cache has one. A descriptor that
   * expired, would expire within the renewal margin (a device must still accept it when it acts
   * on the offer) or is signed by a retired delta key is re-issued with the current delta key
   * and stored, rather than the device falling back to the full image.
   */
  private async readyDelta(store: Store, from: string, to: string, now: number): Promise<ReadyDelta | null> {
    const d = await store.deltas.get(from, to);
    if (d?.status !== 'ready' || !d.descriptor || !d.deltaSha256) return null;
    let descriptor = d.descriptor;
    const margin = Math.max(this.limits.deltaRenewBeforeMs, this.limits.offerTtlMs);
    if (descriptorNeedsRenewal(descriptor, this.keys.delta, now, margin)) {
      const renewed = renewDescriptor(d, this.keys.delta, now, this.limits.deltaTtlDays);
      if (!renewed) return null;
      await store.deltas.setDescriptor(from, to, renewed, now);
      descriptor = renewed;
    }
    return { deltaSha256: d.deltaSha256, descriptor };
  }

  /** Where devices fetch root metadata (`<rootUrl>/<N>.json`) to rotate before they verify an offer. */
  rootUrl(): string {
    return `${this.urls.publicUrl()}/api/v1/trust/root`;
  }

  command(offer: SignedOffer): DeviceCommand {
    return {
      schemaVersion: SCHEMA_VERSION,
      type: 'offer',
      commandId: `cmd_${randomBytes(8).toString('hex')}`,
      offer,
      rootUrl: this.rootUrl(),
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
