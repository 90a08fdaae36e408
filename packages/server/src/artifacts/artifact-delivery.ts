import { ServerError } from '../errors.js';
import { ArtifactStore } from './artifact-store.js';

/**
 * The request header the shipped nginx configuration sets (overriding any value a client sent) on
 * the requests it forwards for authorisation. Only such requests get an `X-Accel-Redirect`
 * answer; a request straight to the server keeps getting the bytes from the server itself.
 */
export const ACCEL_REQUEST_HEADER = 'x-flotilla-accel';

/** Where artifacts are downloaded from and who sends their bytes (docs/cluster.md, "Artifacts behind nginx"). */
export interface ArtifactDelivery {
  /** Base URL signed into offers for images and deltas (null: the public URL). */
  baseUrl: string | null;
  /** nginx `internal` location the artifact store is aliased under, e.g. `/_flotilla/artifacts/` (null: the server streams). */
  accelPrefix: string | null;
}

const PREFIX_RE = /^\/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)+$/;

/** Checks the delivery options at start, so a typo stops the server instead of every download. */
export function artifactDelivery(o: {
  artifactBaseUrl?: string;
  artifactAccelRedirect?: string;
}): ArtifactDelivery {
  let baseUrl: string | null = null;
  if (o.artifactBaseUrl !== undefined) {
    let url: URL | null = null;
    try {
      url = new URL(o.artifactBaseUrl);
    } catch {}
    // Only an origin: the signature covers the path /api/v1/artifacts/<sha256>, which nginx forwards as it is.
    if (
      !url ||
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      url.pathname !== '/' ||
      url.search ||
      url.hash ||
      url.username ||
      url.password
    )
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG',
        `artifact base URL ${JSON.stringify(o.artifactBaseUrl)} is not http(s)://host[:port] (no path, query or credentials)`,
      );
    baseUrl = url.origin;
  }
  let accelPrefix: string | null = null;
  if (o.artifactAccelRedirect !== undefined) {
    if (!PREFIX_RE.test(o.artifactAccelRedirect) || o.artifactAccelRedirect.length > 200)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG',
        `X-Accel-Redirect prefix ${JSON.stringify(o.artifactAccelRedirect)} is not a location path like /_flotilla/artifacts/`,
      );
    accelPrefix = o.artifactAccelRedirect;
  }
  return { baseUrl, accelPrefix };
}

/** The internal URI nginx serves `sha256` from: the prefix, then the store's `<ab>/<sha256>` layout. */
export function accelTarget(prefix: string, sha256: string): string {
  return `${prefix}${ArtifactStore.relativePathOf(sha256)}`;
}
