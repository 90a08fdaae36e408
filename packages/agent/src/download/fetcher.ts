import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { fileURLToPath } from 'node:url';

export interface FetchResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body: AsyncIterable<Uint8Array>;
  /** Stops the transfer and frees the socket. */
  destroy(): void;
}

export interface FetchOptions {
  /** First byte wanted (a Range request when > 0). */
  start: number;
  signal: AbortSignal;
  headers?: Record<string, string>;
  /** Until the response headers arrive. */
  timeoutMs: number;
}

/** Byte source of a payload: HTTP(S) with Range, a local file (USB bundle), or memory (tests). */
export interface Fetcher {
  get(url: string, opts: FetchOptions): Promise<FetchResponse>;
}

/** node:http(s) with Range; `file:` URLs read the local file from `start`. */
export class HttpFetcher implements Fetcher {
  constructor(private readonly opts: { ca?: string | Buffer; bearerToken?: string } = {}) {}

  get(url: string, opts: FetchOptions): Promise<FetchResponse> {
    const u = new URL(url);
    if (u.protocol === 'file:') return fileResponse(fileURLToPath(u), opts.start);
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      return Promise.reject(new TypeError(`unsupported URL scheme ${u.protocol}`));
    const headers: Record<string, string> = { ...opts.headers, 'accept-encoding': 'identity' };
    if (opts.start > 0) headers.range = `bytes=${opts.start}-`;
    if (this.opts.bearerToken) headers.authorization = `Bearer ${this.opts.bearerToken}`;
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(u, {
        method: 'GET',
        headers,
        signal: opts.signal,
        ...(u.protocol === 'https:' && this.opts.ca ? { ca: this.opts.ca } : {}),
      });
      const timer = setTimeout(
        () => req.destroy(new Error(`no response within ${opts.timeoutMs} ms`)),
        opts.timeoutMs,
      );
      req.on('response', (res) => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers as Record<string, string | undefined>,
          body: res,
          destroy: () => {
            res.destroy();
            req.destroy();
          },
        });
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
  }
}

async function fileResponse(path: string, start: number): Promise<FetchResponse> {
  const { size } = await stat(path);
  const stream = createReadStream(path, { start, highWaterMark: 256 * 1024 });
  return {
    status: start > 0 ? 206 : 200,
    headers: {
      'content-length': String(Math.max(0, size - start)),
      ...(start > 0 ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}),
    },
    body: stream,
    destroy: () => stream.destroy(),
  };
}

/** URLs served from memory; `faults` may cut, corrupt or slow a response (tests, simulator). */
export class MemoryFetcher implements Fetcher {
  readonly requests: { url: string; start: number }[] = [];
  private readonly files = new Map<string, Uint8Array>();

  constructor(private readonly faults?: (url: string, start: number, bytes: Uint8Array) => Uint8Array) {}

  put(url: string, bytes: Uint8Array): void {
    this.files.set(url, bytes);
  }

  async get(url: string, opts: FetchOptions): Promise<FetchResponse> {
    this.requests.push({ url, start: opts.start });
    const all = this.files.get(url);
    if (!all) return { status: 404, headers: {}, body: (async function* () {})(), destroy: () => undefined };
    let bytes = all.subarray(opts.start);
    if (this.faults) bytes = this.faults(url, opts.start, bytes);
    const piece = 64 * 1024;
    return {
      status: opts.start > 0 ? 206 : 200,
      headers: {
        'content-length': String(bytes.length),
        ...(opts.start > 0 ? { 'content-range': `bytes ${opts.start}-${all.length - 1}/${all.length}` } : {}),
      },
      body: (async function* () {
        for (let i = 0; i < bytes.length; i += piece) yield bytes.subarray(i, i + piece);
      })(),
      destroy: () => undefined,
    };
  }
}
