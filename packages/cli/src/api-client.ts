import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { CodedError, type ErrorEntry } from '@flotilla/protocol';
import type { Command } from 'commander';
import { createParser } from 'eventsource-parser';
import { bundleFileStats } from './bundle-file.js';
import { CLI_ERRORS, type CliErrorCode } from './errors.js';

/**
 * A small typed client for the server's operator API (`/api/v1`). Every failure becomes an
 * ApiClientError with a stable code and a hint the CLI prints as is: the server's own
 * `{error:{code,message,hint}}`, or a transport problem named here.
 */

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';
const DEFAULT_TIMEOUT_MS = 30_000;
/** Bounds on what the client reads back (a hostile or broken server cannot exhaust memory). */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/**
 * A failure talking to the server: the server's own coded error relayed as it answered
 * (component `server`), or a CLI_ERRORS code naming what went wrong on the way (component `cli`).
 */
export class ApiClientError extends CodedError<string> {
  /** The HTTP status the server answered with, 0 when no answer arrived (the watch retries then). */
  readonly httpStatus: number;

  private constructor(
    entry: ErrorEntry,
    code: string,
    component: string,
    detail: string | undefined,
    httpStatus: number,
    cause?: unknown,
  ) {
    super(entry, code, component, detail, { cause });
    this.name = 'ApiClientError';
    this.httpStatus = httpStatus;
  }

  /** A failure named by the CLI; its status is the server's when the server answered. */
  static of(code: CliErrorCode, detail: string | undefined, httpStatus = 0, cause?: unknown): ApiClientError {
    const entry = CLI_ERRORS[code];
    return new ApiClientError(
      httpStatus ? { ...entry, status: httpStatus } : entry,
      code,
      'cli',
      detail,
      httpStatus,
      cause,
    );
  }

  /** The server's own `{error:{code,message,hint}}`, kept as it answered. */
  static relayed(
    code: string,
    message: string,
    hint: string | undefined,
    httpStatus: number,
  ): ApiClientError {
    return new ApiClientError(
      { status: httpStatus, message, hint: hint ?? '' },
      code,
      'server',
      undefined,
      httpStatus,
    );
  }
}

// ---- response shapes (what the CLI reads; extra fields pass through to --json) --------------

export interface ReleaseInfo {
  version: string;
  name?: string;
  kind?: string;
  securityVersion?: number;
  compatible?: string[];
  channels?: string[];
  image?: { sha256: string; size: number; format?: string };
  created?: string | number;
  [k: string]: unknown;
}

export interface PhaseProgress {
  index: number;
  name: string;
  total: number;
  healthy: number;
  failed: number;
  inFlight: number;
  notStarted: number;
  successThreshold: number;
  errorThreshold: number;
  successPercent: number;
  errorPercent: number;
  status: string;
  [k: string]: unknown;
}

export interface RolloutInfo {
  id: string;
  name?: string;
  release: string;
  status: string;
  created?: string | number;
  summary?: {
    status: string;
    currentPhase: number;
    pause: Record<string, unknown> | null;
    rollingBack?: boolean;
    phases: PhaseProgress[];
    totals: {
      devices: number;
      healthy: number;
      failed: number;
      inFlight: number;
      notStarted: number;
      /** In flight when the rollout was aborted (not failures). */
      aborted?: number;
    };
    /** Why a `failed` rollout ended. */
    failure?: { phase: number; healthy: number; total: number; successThreshold: number } | null;
  };
  [k: string]: unknown;
}

export interface DeviceInfo {
  id: string;
  status?: string;
  hardware?: string;
  currentVersion?: string | null;
  version?: string | null;
  online?: boolean;
  lastSeen?: string | number | null;
  tags?: string[];
  group?: string | null;
  channel?: string | null;
  [k: string]: unknown;
}

export interface TokenInfo {
  id: string;
  name: string;
  role: string;
  created: string;
  lastUsed: string | null;
  revoked: string | null;
}

export interface AuditEntryInfo {
  id: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  detail: Record<string, unknown>;
}

export interface HistoryEntryInfo {
  ts: string;
  source: 'event' | 'deployment' | 'audit';
  kind: string;
  summary: string;
  ref: string;
  detail: Record<string, unknown>;
}

export interface ListResult<T> {
  items: T[];
  total?: number;
}

export interface ClientOptions {
  server?: string;
  token?: string;
  timeoutMs?: number;
}

export class ApiClient {
  readonly base: URL;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(opts: ClientOptions = {}) {
    const server = opts.server ?? DEFAULT_SERVER;
    let url: URL;
    try {
      url = new URL(server);
    } catch (err) {
      throw ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_URL', server, 0, err);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_URL', server);
    }
    this.base = new URL(`${url.origin}${url.pathname.replace(/\/+$/, '')}/api/v1/`);
    this.token = opts.token || undefined;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  url(path: string): URL {
    return new URL(path.replace(/^\/+/, ''), this.base);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** One JSON request; throws ApiClientError for every failure. */
  async request<T>(method: string, path: string, body?: unknown, upload?: Upload): Promise<T> {
    const url = this.url(path);
    const headers = this.headers(
      upload
        ? { 'content-type': upload.contentType, 'content-length': String(upload.size) }
        : body !== undefined
          ? { 'content-type': 'application/json' }
          : {},
    );
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: upload ? upload.stream() : body !== undefined ? JSON.stringify(body) : undefined,
        // Streams a large bundle instead of holding it in memory.
        ...(upload ? { duplex: 'half' } : {}),
        signal: AbortSignal.timeout(upload ? Math.max(this.timeoutMs, 600_000) : this.timeoutMs),
      } as RequestInit);
    } catch (err) {
      throw transportError(err, url);
    }
    const text = await readBounded(res);
    let data: unknown = null;
    if (text.length > 0) {
      try {
        data = JSON.parse(text);
      } catch (err) {
        if (res.ok) {
          throw ApiClientError.of(
            'FLOTILLA_ERR_CLI_SERVER_RESPONSE',
            `${method} ${url.pathname}: not JSON`,
            res.status,
            err,
          );
        }
      }
    }
    if (!res.ok) throw httpError(res.status, data, method, url);
    return data as T;
  }

  // ---- releases --------------------------------------------------------------------------------
  listReleases(channel?: string): Promise<ListResult<ReleaseInfo>> {
    return this.request<unknown>('GET', `releases${query({ channel })}`).then((d) =>
      asList<ReleaseInfo>(d, 'releases'),
    );
  }

  /**
   * Uploads a release bundle (`.flot`, made by `flotilla bundle create`) to `POST /releases/bundle`;
   * the server verifies it as it streams in. New releases land in `dev`.
   */
  async createRelease(bundlePath: string): Promise<ReleaseInfo> {
    const upload = await fileUpload(bundlePath);
    const out = await this.request<unknown>('POST', 'releases/bundle', undefined, upload);
    return unwrap<ReleaseInfo>(out, 'release');
  }

  promoteRelease(version: string, channel: string): Promise<ReleaseInfo> {
    return this.request<unknown>('POST', `releases/${enc(version)}/promote`, { channel }).then((d) =>
      unwrap<ReleaseInfo>(d, 'release'),
    );
  }

  getRelease(version: string): Promise<ReleaseInfo> {
    return this.request<unknown>('GET', `releases/${enc(version)}`).then((d) =>
      unwrap<ReleaseInfo>(d, 'release'),
    );
  }

  // ---- rollouts --------------------------------------------------------------------------------
  listRollouts(): Promise<ListResult<RolloutInfo>> {
    return this.request<unknown>('GET', 'rollouts').then((d) => asList<RolloutInfo>(d, 'rollouts'));
  }

  getRollout(id: string): Promise<RolloutInfo> {
    return this.request<unknown>('GET', `rollouts/${enc(id)}`).then((d) => unwrap<RolloutInfo>(d, 'rollout'));
  }

  createRollout(body: { name?: string; release: string; policy: unknown }): Promise<RolloutInfo> {
    return this.request<unknown>('POST', 'rollouts', body).then((d) => unwrap<RolloutInfo>(d, 'rollout'));
  }

  rolloutAction(
    id: string,
    action: 'pause' | 'resume' | 'abort' | 'approve',
    body: Record<string, unknown> = {},
  ): Promise<RolloutInfo> {
    return this.request<unknown>('POST', `rollouts/${enc(id)}/${action}`, body).then((d) =>
      unwrap<RolloutInfo>(d, 'rollout'),
    );
  }

  // ---- devices ---------------------------------------------------------------------------------
  listDevices(filter: Record<string, string | number | undefined> = {}): Promise<ListResult<DeviceInfo>> {
    return this.request<unknown>('GET', `devices${query(filter)}`).then((d) =>
      asList<DeviceInfo>(d, 'devices'),
    );
  }

  getDevice(id: string): Promise<DeviceInfo> {
    return this.request<unknown>('GET', `devices/${enc(id)}`).then((d) => unwrap<DeviceInfo>(d, 'device'));
  }

  acceptDevice(id: string): Promise<DeviceInfo> {
    return this.request<unknown>('POST', `devices/${enc(id)}/accept`, {}).then((d) =>
      unwrap<DeviceInfo>(d, 'device'),
    );
  }

  deviceHistory(id: string, page: { until?: string; limit?: number }): Promise<ListResult<HistoryEntryInfo>> {
    return this.request<unknown>('GET', `devices/${enc(id)}/history${query(page)}`).then((d) =>
      asList<HistoryEntryInfo>(d, 'history'),
    );
  }

  // ---- API tokens and the audit log (admin) ----------------------------------------------------
  createToken(name: string, role: string): Promise<TokenInfo & { token: string }> {
    return this.request<TokenInfo & { token: string }>('POST', 'tokens', { name, role });
  }

  listTokens(): Promise<ListResult<TokenInfo>> {
    return this.request<unknown>('GET', 'tokens').then((d) => asList<TokenInfo>(d, 'tokens'));
  }

  revokeToken(id: string): Promise<{ id: string; revoked: true }> {
    return this.request<{ id: string; revoked: true }>('DELETE', `tokens/${enc(id)}`);
  }

  listAudit(filter: Record<string, string | number | undefined>): Promise<ListResult<AuditEntryInfo>> {
    return this.request<unknown>('GET', `audit${query(filter)}`).then((d) =>
      asList<AuditEntryInfo>(d, 'audit'),
    );
  }

  // ---- live events -----------------------------------------------------------------------------
  /**
   * Reads the SSE stream `/events` until `signal` aborts or the server closes it; calls
   * `onEvent(type, data)` per event. Resolves when the stream ends.
   */
  async streamEvents(signal: AbortSignal, onEvent: (type: string, data: unknown) => void): Promise<void> {
    const url = this.url('events');
    let res: Response;
    try {
      res = await fetch(url, { headers: this.headers({ accept: 'text/event-stream' }), signal });
    } catch (err) {
      if (signal.aborted) return;
      throw transportError(err, url);
    }
    if (!res.ok || !res.body) throw httpError(res.status, await readBounded(res).catch(() => ''), 'GET', url);
    const decoder = new TextDecoder();
    const parser = createParser({
      // A runaway event is dropped, not kept: the parser stops at the bound and starts afresh.
      maxBufferSize: MAX_EVENT_CHARS,
      onError: () => parser.reset({ consume: false }),
      onEvent: (event) => dispatchSse(event.event ?? 'message', event.data, onEvent),
    });
    try {
      for await (const chunk of res.body) parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
    } catch (err) {
      if (!signal.aborted) throw transportError(err, url);
    }
  }
}

const MAX_EVENT_CHARS = 1024 * 1024;

function dispatchSse(type: string, text: string, onEvent: (type: string, data: unknown) => void): void {
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  // Either `event: X` + data, or an unnamed event carrying { type, data }.
  if (
    type === 'message' &&
    parsed &&
    typeof parsed === 'object' &&
    typeof (parsed as { type?: unknown }).type === 'string'
  ) {
    const event = parsed as { type: string; data?: unknown };
    onEvent(event.type, event.data ?? event);
  } else onEvent(type, parsed);
}

const enc = encodeURIComponent;

function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Lists come as `{items}` (or `{<name>: [...]}`, or a bare array). */
function asList<T>(data: unknown, name: string): ListResult<T> {
  if (Array.isArray(data)) return { items: data as T[] };
  if (data && typeof data === 'object') {
    const envelope = data as Record<string, unknown>;
    const items = envelope.items ?? envelope[name];
    if (Array.isArray(items))
      return { items: items as T[], total: typeof envelope.total === 'number' ? envelope.total : undefined };
  }
  throw ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_RESPONSE', `expected a list of ${name}`);
}

/** Single objects come bare or as `{<name>: {...}}`. */
function unwrap<T>(data: unknown, name: string): T {
  if (data && typeof data === 'object') {
    const inner = (data as Record<string, unknown>)[name];
    if (inner && typeof inner === 'object' && !Array.isArray(inner)) return inner as T;
    return data as T;
  }
  throw ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_RESPONSE', `expected a ${name} object`);
}

function transportError(err: unknown, url: URL): ApiClientError {
  const failure = err as { name?: string; cause?: { code?: string } };
  if (failure?.name === 'TimeoutError')
    return ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_TIMEOUT', url.origin, 0, err);
  const code = failure?.cause?.code ? ` (${failure.cause.code})` : '';
  return ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_UNREACHABLE', `${url.origin}${code}`, 0, err);
}

function httpError(status: number, data: unknown, method: string, url: URL): ApiClientError {
  // The server answers {error:{code,message,hint}}; fastify's own errors {code,message}.
  const body = (data && typeof data === 'object' ? data : {}) as Record<string, unknown>;
  const err = (body.error && typeof body.error === 'object' ? body.error : body) as Record<string, unknown>;
  const code = typeof err.code === 'string' && err.code.startsWith('FLOTILLA_ERR_') ? err.code : undefined;
  const message =
    typeof err.message === 'string' ? err.message : `${method} ${url.pathname} answered HTTP ${status}`;
  const hint = typeof err.hint === 'string' ? err.hint : undefined;
  if (code) return ApiClientError.relayed(code, message, hint, status);
  if (status === 401 || status === 403)
    return ApiClientError.of('FLOTILLA_ERR_CLI_UNAUTHORIZED', message, status);
  return ApiClientError.of('FLOTILLA_ERR_CLI_HTTP', `HTTP ${status}: ${message}`, status);
}

async function readBounded(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Uint8Array).byteLength;
    if (size > MAX_RESPONSE_BYTES) {
      throw ApiClientError.of(
        'FLOTILLA_ERR_CLI_SERVER_RESPONSE',
        `response larger than ${MAX_RESPONSE_BYTES} bytes`,
        res.status,
      );
    }
    chunks.push(chunk as Uint8Array);
  }
  return Buffer.concat(chunks).toString('utf8');
}

interface Upload {
  size: number;
  contentType: string;
  stream(): ReadableStream;
}

async function fileUpload(path: string): Promise<Upload> {
  const { size } = await bundleFileStats(path);
  return {
    size,
    contentType: 'application/vnd.flotilla.bundle',
    stream: () => Readable.toWeb(createReadStream(path)) as ReadableStream,
  };
}

// ---- helpers shared by the operator command groups ----------------------------------------------

/**
 * `--server` and `--token` on the program (once, whichever group registers first), so they work
 * before or after the sub-command: `flotilla --server URL rollout list`.
 */
export function addServerOptions(program: Command): void {
  if (program.options.some((o) => o.long === '--server')) return;
  program
    .option('--server <url>', `Flotilla server (env FLOTILLA_SERVER, default ${DEFAULT_SERVER})`)
    .option('--token <token>', 'operator API token (env FLOTILLA_TOKEN)');
}

/** The client for a command, from its (global) options and the environment. */
export function clientFor(cmd: Command): ApiClient {
  const globals = cmd.optsWithGlobals() as { server?: string; token?: string };
  return new ApiClient({
    server: globals.server ?? process.env.FLOTILLA_SERVER ?? DEFAULT_SERVER,
    token: globals.token ?? process.env.FLOTILLA_TOKEN,
  });
}

/** Whether `--json` was given to this command. */
export function wantsJson(cmd: Command): boolean {
  return Boolean((cmd.optsWithGlobals() as { json?: boolean }).json);
}

/** A plain text table: header row, columns padded to their widest cell. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '–' : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Epoch ms or ISO text as a short UTC time. */
export function when(t: string | number | null | undefined): string {
  if (t === null || t === undefined || t === '') return '–';
  const date = new Date(t);
  return Number.isNaN(date.getTime())
    ? String(t)
    : date
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');
}
