/**
 * The dashboard's only door to the server: the same `/api/v1` the CLI uses, with the operator
 * token as a bearer token. Errors keep the server's stable `FLOTILLA_ERR_*` code so pages can
 * say exactly what went wrong (e.g. a viewer token refused with FLOTILLA_ERR_SERVER_FORBIDDEN).
 */
const BASE = '/api/v1';
const TOKEN_KEY = 'flotilla.token';

export class ApiError extends Error {
  constructor(status, code, message, hint) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

// sessionStorage: the token lives as long as the tab, and never lands in a URL or a cookie.
export const tokenStore = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export async function request(method, path, opts = {}) {
  return (await requestWithTiming(method, path, opts)).data;
}

/**
 * Like `request`, plus the server's own time for the work (its Server-Timing header, in ms;
 * null when the route sends none), which the device search shows.
 */
export async function requestWithTiming(method, path, { body, token = tokenStore.get(), signal } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(
      0,
      'NETWORK',
      'the server cannot be reached',
      'check that the Flotilla server is running',
    );
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    // The server's errors come as { error: { code, message, hint } }, fastify's own as { code, message }.
    const e = data?.error && typeof data.error === 'object' ? data.error : data;
    throw new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? res.statusText, e?.hint);
  }
  const dur = /dur=([0-9.]+)/.exec(res.headers.get('server-timing') ?? '');
  return { data, serverMs: dur ? Number(dur[1]) : null };
}

const enc = encodeURIComponent;
const qs = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
};

/** Who is signed in: `{id, name, role}` of the token (401 when it is unknown or revoked). */
const whoami = (token) => request('GET', '/auth/whoami', { token });

/** Whole-fleet counts computed by the server: by status, online, and by version, agent state and hardware. */
const fleetSummary = () => request('GET', '/fleet/summary');

/** Releases with their signed manifests (signatures, SBOM format and size live there). */
async function releasesWithManifests() {
  const list = await request('GET', '/releases');
  const items = await Promise.all(
    list.items.slice(0, 50).map((r) => request('GET', `/releases/${enc(r.version)}`).catch(() => r)),
  );
  return { items: [...items, ...list.items.slice(50)] };
}

export const api = {
  whoami,
  fleetSummary,
  versionHistory: (hours = 72) => request('GET', `/fleet/versions/history${qs({ hours })}`),
  devices: (filter = {}) => request('GET', `/devices${qs({ limit: 200, ...filter })}`),
  /** One page of a device search: `{ data: {items, total, next}, serverMs }`. */
  searchDevices: (filter) => requestWithTiming('GET', `/devices${qs(filter)}`),
  setPlacement: (id, placement) => request('PUT', `/devices/${enc(id)}/placement`, { body: placement }),
  device: (id) => request('GET', `/devices/${enc(id)}`),
  deviceInventory: (id) => request('GET', `/devices/${enc(id)}/inventory`),
  deviceEvents: (id) => request('GET', `/devices/${enc(id)}/timeline${qs({ limit: 200 })}`),
  deviceDeployments: (id) => request('GET', `/devices/${enc(id)}/deployments`),
  acceptDevice: (id) => request('POST', `/devices/${enc(id)}/accept`, { body: {} }),
  rollouts: () => request('GET', '/rollouts'),
  rollout: (id) => request('GET', `/rollouts/${enc(id)}`),
  rolloutDeployments: (id) => request('GET', `/rollouts/${enc(id)}/deployments`),
  approvePhase: (id, phase) => request('POST', `/rollouts/${enc(id)}/approve`, { body: { phase } }),
  pauseRollout: (id, note) => request('POST', `/rollouts/${enc(id)}/pause`, { body: note ? { note } : {} }),
  resumeRollout: (id) => request('POST', `/rollouts/${enc(id)}/resume`, { body: {} }),
  abortRollout: (id) => request('POST', `/rollouts/${enc(id)}/abort`, { body: {} }),
  previewRollout: (input) => request('POST', '/rollouts/preview', { body: input }),
  createRollout: (input) => request('POST', '/rollouts', { body: input }),
  releases: releasesWithManifests,
  promoteRelease: (version, channel) =>
    request('POST', `/releases/${enc(version)}/promote`, { body: { channel } }),
  uploadBundle,
  tokens: () => request('GET', '/tokens'),
  createToken: (name, role) => request('POST', '/tokens', { body: { name, role } }),
  revokeToken: (id) => request('DELETE', `/tokens/${enc(id)}`),
  audit: (before) => request('GET', `/audit${qs({ before, limit: 100 })}`),
  deltas: () => request('GET', '/deltas'),
  vulnStatus: () => request('GET', '/vulnerabilities/status'),
  vulnFleet: () => request('GET', '/vulnerabilities/fleet'),
  releaseVulns: (version) => request('GET', `/releases/${enc(version)}/vulnerabilities`),
  releasePromotions: (version) => request('GET', `/releases/${enc(version)}/promotions`),
  artifactUrl: (sha256) => `${BASE}/artifacts/${enc(sha256)}`,
  downloadArtifact,
};

/**
 * Artifacts need a credential (a plain link would be refused): fetched with the operator token,
 * then saved from a blob under `filename`.
 */
async function downloadArtifact(sha256, filename) {
  const token = tokenStore.get();
  const res = await fetch(`${BASE}/artifacts/${enc(sha256)}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (!res.ok) {
    const e = (await res.json().catch(() => null))?.error;
    throw new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? res.statusText, e?.hint);
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * Uploads a `.flot` bundle with the signed-in token. XMLHttpRequest, not fetch: only it reports
 * upload progress, which `onProgress(sentBytes, totalBytes)` receives. Resolves to the release.
 */
function uploadBundle(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${BASE}/releases/bundle`);
    const token = tokenStore.get();
    if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', 'application/vnd.flotilla.bundle');
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.onprogress = (e) => onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onerror = () =>
      reject(new ApiError(0, 'NETWORK', 'the upload was cut off', 'check the connection and upload again'));
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300)
        return resolve({ release: data, created: xhr.status === 201 });
      const e = data?.error ?? {};
      reject(new ApiError(xhr.status, e.code ?? `HTTP_${xhr.status}`, e.message ?? xhr.statusText, e.hint));
    };
    xhr.send(file);
  });
}
