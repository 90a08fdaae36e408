import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ServerError } from '../errors.js';

/** The query parameters of a signed artifact URL (S3/CloudFront style). */
export interface SignedUrlParams {
  /** Who the URL was made for: a device id (or another audience name). */
  aud: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  /** base64url HMAC-SHA256 over (path, sha256, aud, exp). */
  sig: string;
}

const SECRET_BYTES = 32;

/**
 * Short-lived artifact URLs: an HMAC over the path, the artifact's sha256, the audience (device id)
 * and the expiry, under a server-held secret (`url-signing.key` in the data dir, mode 0600). A URL
 * fetches exactly one artifact until it expires; the same form can later be checked by nginx
 * (secure_link_hmac) or a CDN holding the secret, without a call to the server.
 */
/** The secret in `path` as hex, made (mode 0600) when the file is missing; a malformed file is refused. */
export function readUrlSigningSecret(path: string): string {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${randomBytes(SECRET_BYTES).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  }
  chmodSync(path, 0o600);
  const text = readFileSync(path, 'utf8').trim();
  if (!/^[0-9a-f]{64,128}$/.test(text))
    throw new ServerError('FLOTILLA_ERR_SERVER_KEYS', `${path} is not a URL-signing secret (64+ hex digits)`);
  return text;
}

export class UrlSigner {
  private constructor(private readonly secret: Buffer) {}

  /** Reads the secret, or makes it on first start. */
  static open(path: string): UrlSigner {
    return new UrlSigner(Buffer.from(readUrlSigningSecret(path), 'hex'));
  }

  /** For tests and embedders that keep the secret elsewhere. */
  static fromSecret(secret: Buffer): UrlSigner {
    return new UrlSigner(Buffer.from(secret));
  }

  private mac(path: string, sha256: string, aud: string, exp: number): Buffer {
    return createHmac('sha256', this.secret).update(`${path}\n${sha256}\n${aud}\n${exp}`).digest();
  }

  /** `?aud=…&exp=…&sig=…` for `path` (the URL's path, e.g. /api/v1/artifacts/<sha256>). */
  sign(path: string, sha256: string, aud: string, expiresAtMs: number): string {
    const exp = Math.floor(expiresAtMs / 1000);
    const sig = this.mac(path, sha256, aud, exp).toString('base64url');
    return `aud=${encodeURIComponent(aud)}&exp=${exp}&sig=${sig}`;
  }

  /**
   * Checks a signed URL in constant time. Throws FLOTILLA_ERR_SERVER_URL_SIGNATURE for a URL made
   * for another artifact, path or audience (or no URL of ours at all), and
   * FLOTILLA_ERR_SERVER_URL_EXPIRED for a genuine one past its expiry: the agent then asks for a
   * fresh offer and resumes where it stopped.
   */
  verify(
    path: string,
    sha256: string,
    q: Partial<Record<keyof SignedUrlParams, string>>,
    nowMs: number,
  ): string {
    const aud = q.aud ?? '';
    const expText = q.exp ?? '';
    const given = Buffer.from(q.sig ?? '', 'base64url');
    if (!/^\d{1,12}$/.test(expText) || aud === '' || aud.length > 128 || given.length !== 32)
      throw new ServerError('FLOTILLA_ERR_SERVER_URL_SIGNATURE', 'malformed aud/exp/sig');
    const exp = Number(expText);
    if (!timingSafeEqual(given, this.mac(path, sha256, aud, exp)))
      throw new ServerError('FLOTILLA_ERR_SERVER_URL_SIGNATURE', `not a URL for ${path}`);
    if (exp * 1000 <= nowMs)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_URL_EXPIRED',
        `expired ${new Date(exp * 1000).toISOString()} (audience ${aud})`,
      );
    return aud;
  }
}
