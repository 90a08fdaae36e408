import { backoffMs, type Clock } from '../clock.js';
import { AgentError, errorCodeOf, isKilled } from '../errors.js';
import type { AgentLimits } from '../limits.js';
import type { Logger } from '../logger.js';
import type { Fetcher } from './fetcher.js';

/** Where downloaded bytes go. `restart` returns the byte to resume from and drops any partial chunk. */
export interface DownloadSink {
  restart(): Promise<number>;
  write(data: Uint8Array): Promise<void>;
}

export interface DownloadOptions {
  fetcher: Fetcher;
  clock: Clock;
  url: string;
  /** Where the payload starts inside the resource (a bundle section), and its exact size. */
  offset: number;
  size: number;
  sink: DownloadSink;
  limits: AgentLimits['download'];
  signal: AbortSignal;
  onProgress?: (bytes: number) => void;
  random?: () => number;
  /** Each failed attempt is logged here (one warn line per retry). */
  log?: Logger;
  /**
   * The signed URL expired (the server's coded 403): get a fresh one (a re-sent offer). Without
   * it an expired URL ends the download.
   */
  refreshUrl?: () => Promise<string>;
}

/** The server's code for a genuine signed URL past its expiry (FLOTILLA_ERR_SERVER_URL_EXPIRED). */
const URL_EXPIRED = 'FLOTILLA_ERR_SERVER_URL_EXPIRED';

/**
 * Errors another attempt cannot fix: the signed size was exceeded, or the bytes contradict the
 * signed manifest (the same source serves the same tampered bytes again; the server may re-offer).
 */
const FATAL = new Set([
  'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
  'FLOTILLA_ERR_AGENT_ACTIVE_SLOT_WRITE',
  'FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH',
]);

/**
 * Fetches exactly `size` bytes into `sink`, resuming with Range after a cut connection, retrying
 * with backoff and jitter, and defending against endless data (hard size bound) and slow
 * retrieval (minimum rate per window, idle timeout).
 */
export async function download(options: DownloadOptions): Promise<void> {
  let failures = 0;
  let attempts = 0;
  let lastError: unknown;
  let url = options.url;
  while (true) {
    options.signal.throwIfAborted();
    const pos = await options.sink.restart();
    if (pos >= options.size) return;
    attempts++;
    try {
      await attempt(options, url, pos);
      // The body ended. Short of the signed size (a truncated object, a proxy that closed early)
      // is a failed attempt like any other: counted, backed off, bounded — never a hot loop.
      const reached = await options.sink.restart();
      if (reached >= options.size) return;
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_DOWNLOAD_TRUNCATED',
        `${url.split('?')[0]}: the body ended at byte ${reached} of ${options.size}`,
        { component: 'downloader' },
      );
    } catch (err) {
      if (isKilled(err) || options.signal.aborted) throw err;
      if (
        (err as { expired?: boolean }).expired &&
        options.refreshUrl &&
        attempts < options.limits.maxAttempts
      ) {
        // Not the server's fault nor ours: a fresh URL, then Range resumes from the same byte.
        options.log?.info(
          { url: url.split('?')[0], attempt: attempts, at: pos },
          'download URL expired; asking for a fresh one',
        );
        url = await options.refreshUrl();
        continue;
      }
      if (FATAL.has(errorCodeOf(err) ?? '') || (err as { fatal?: boolean }).fatal) throw err;
      lastError = err;
    }
    const progressed = (await options.sink.restart()) > pos;
    failures = progressed ? 1 : failures + 1;
    if (failures > options.limits.maxRetries || attempts >= options.limits.maxAttempts) {
      const code = errorCodeOf(lastError) ?? '';
      if (code.startsWith('FLOTILLA_ERR_')) throw lastError;
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_DOWNLOAD_FAILED',
        `${url.split('?')[0]}: ${(lastError as Error)?.message}`,
        {
          cause: lastError,
          component: 'downloader',
        },
      );
    }
    const waitMs = backoffMs(
      failures - 1,
      options.limits.backoffBaseMs,
      options.limits.backoffMaxMs,
      options.random,
    );
    options.log?.warn(
      {
        url: url.split('?')[0],
        attempt: attempts,
        failures,
        waitMs,
        code: errorCodeOf(lastError) ?? null,
        err: (lastError as Error)?.message,
      },
      'download attempt failed; retrying',
    );
    await options.clock.sleep(waitMs, options.signal);
  }
}

async function attempt(options: DownloadOptions, url: string, pos: number): Promise<void> {
  const ac = new AbortController();
  const onOuter = () => ac.abort(options.signal.reason);
  options.signal.addEventListener('abort', onOuter, { once: true });
  let idleTimer: NodeJS.Timeout | undefined;
  let res: Awaited<ReturnType<Fetcher['get']>> | undefined;
  try {
    res = await options.fetcher.get(url, {
      start: options.offset + pos,
      signal: ac.signal,
      timeoutMs: options.limits.connectTimeoutMs,
    });
    const remaining = options.size - pos;
    let skip = 0;
    if (res.status === 206) {
      const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
      if (!range || Number(range[1]) !== options.offset + pos)
        throw new Error(
          `server answered range ${res.headers['content-range'] ?? '(none)'} for ${options.offset + pos}`,
        );
    } else if (res.status === 200) {
      skip = options.offset + pos; // the server ignored Range: read past what we already have
    } else {
      const where = url.split('?')[0]; // the signature stays out of logs and reports
      if (res.status === 403 && (await errorCodeOfBody(res.body)) === URL_EXPIRED) {
        const err = new AgentError('FLOTILLA_ERR_AGENT_URL_EXPIRED', `${where} (HTTP 403 ${URL_EXPIRED})`, {
          component: 'downloader',
        });
        throw Object.assign(err, { expired: true, fatal: !options.refreshUrl });
      }
      const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
      const err = new AgentError('FLOTILLA_ERR_AGENT_DOWNLOAD_HTTP', `HTTP ${res.status} for ${where}`, {
        component: 'downloader',
      });
      throw Object.assign(err, { fatal: !retryable });
    }
    const declared = res.headers['content-length'];
    if (declared !== undefined && Number(declared) > skip + remaining)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
        `server announces ${declared} bytes, ${remaining} expected`,
        { component: 'downloader' },
      );

    const idle = () => ac.abort(new Error(`no data for ${options.limits.idleTimeoutMs} ms`));
    idleTimer = setTimeout(idle, options.limits.idleTimeoutMs);
    let windowStart = options.clock.monotonicMs();
    let windowBytes = 0;
    let got = 0;
    for await (const piece of res.body) {
      idleTimer.refresh();
      let data = piece;
      if (skip > 0) {
        const drop = Math.min(skip, data.length);
        skip -= drop;
        data = data.subarray(drop);
        if (data.length === 0) continue;
      }
      if (got + data.length > remaining)
        throw new AgentError(
          'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_LARGE',
          `more than the signed ${options.size} bytes`,
          {
            component: 'downloader',
          },
        );
      await options.sink.write(data);
      got += data.length;
      windowBytes += data.length;
      options.onProgress?.(pos + got);
      const elapsed = options.clock.monotonicMs() - windowStart;
      if (elapsed >= options.limits.rateWindowMs) {
        const rate = (windowBytes * 1000) / elapsed;
        if (rate < options.limits.minBytesPerSecond)
          throw new AgentError(
            'FLOTILLA_ERR_AGENT_DOWNLOAD_TOO_SLOW',
            `${Math.round(rate)} B/s over ${Math.round(elapsed)} ms, minimum ${options.limits.minBytesPerSecond} B/s`,
            { component: 'downloader' },
          );
        windowStart = options.clock.monotonicMs();
        windowBytes = 0;
      }
    }
    if (ac.signal.aborted) throw ac.signal.reason;
  } catch (err) {
    // The idle timer aborts the request: report why, not the socket's generic abort error.
    if (ac.signal.aborted && !options.signal.aborted && !errorCodeOf(err)?.startsWith('FLOTILLA_ERR_'))
      throw ac.signal.reason ?? err;
    throw err;
  } finally {
    clearTimeout(idleTimer);
    options.signal.removeEventListener('abort', onOuter);
    res?.destroy();
  }
}

/** The `error.code` of a server error body (read at most 4 KiB), or null. */
async function errorCodeOfBody(body: AsyncIterable<Uint8Array>): Promise<string | null> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const piece of body) {
    parts.push(piece);
    total += piece.length;
    if (total >= 4096) break;
  }
  try {
    const parsed = JSON.parse(Buffer.concat(parts).subarray(0, 4096).toString('utf8')) as {
      error?: { code?: unknown };
    };
    return typeof parsed.error?.code === 'string' ? parsed.error.code : null;
  } catch {
    return null;
  }
}
