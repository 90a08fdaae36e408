import { parseJson } from '@flotilla/protocol';
import type { Fetcher } from '../download/fetcher.js';
import { AgentError } from '../errors.js';
import { AGENT_LIMITS } from '../limits.js';

/** Where newer root metadata comes from: root version N, or null when there is none (yet). */
export interface RootSource {
  fetch(version: number, signal?: AbortSignal): Promise<unknown | null>;
}

/**
 * The server's root metadata over HTTP: `GET <baseUrl>/<N>.json`, 404 = no such version (the
 * chain ends). Size-capped before parsing; what comes back is only data — the trust store
 * verifies every root against the one before it, so the URL itself need not be trusted.
 */
export class HttpRootSource implements RootSource {
  constructor(
    readonly baseUrl: string,
    private readonly fetcher: Fetcher,
    private readonly limits: { maxRootBytes: number; fetchTimeoutMs: number } = AGENT_LIMITS.trust,
  ) {}

  async fetch(version: number, signal?: AbortSignal): Promise<unknown | null> {
    const url = `${this.baseUrl.replace(/\/+$/, '')}/${version}.json`;
    const timeout = AbortSignal.timeout(this.limits.fetchTimeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Awaited<ReturnType<Fetcher['get']>>;
    try {
      res = await this.fetcher.get(url, { start: 0, signal: both, timeoutMs: this.limits.fetchTimeoutMs });
    } catch (cause) {
      throw new AgentError('FLOTILLA_ERR_AGENT_TRUST_FETCH', `${url}: ${(cause as Error).message}`, {
        cause,
      });
    }
    try {
      if (res.status === 404) return null;
      if (res.status !== 200)
        throw new AgentError('FLOTILLA_ERR_AGENT_TRUST_FETCH', `${url} answered ${res.status}`);
      const parts: Uint8Array[] = [];
      let size = 0;
      for await (const part of res.body) {
        size += part.length;
        if (size > this.limits.maxRootBytes)
          throw new AgentError(
            'FLOTILLA_ERR_AGENT_TRUST_FETCH',
            `${url} is larger than ${this.limits.maxRootBytes} bytes`,
          );
        parts.push(part);
      }
      return parseJson(Buffer.concat(parts), { maxBytes: this.limits.maxRootBytes });
    } catch (err) {
      if (err instanceof AgentError) throw err;
      throw new AgentError('FLOTILLA_ERR_AGENT_TRUST_FETCH', `${url}: ${(err as Error).message}`, {
        cause: err,
      });
    } finally {
      res.destroy();
    }
  }
}
