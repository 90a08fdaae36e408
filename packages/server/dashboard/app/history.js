/**
 * Devices-per-version samples for the versions-over-time chart. The server keeps no history of
 * its own (Prometheus does: flotilla_devices_by_version), so once signed in the dashboard samples
 * the fleet's version counts in the background — on every page — whenever devices report, at most
 * every 2 s, and keeps them for the browser tab's life in sessionStorage.
 */
import { request } from './api.js';
import { onLive } from './live.js';

const KEY = 'flotilla.version-history';
const MAX_POINTS = 720;
const MIN_INTERVAL_MS = 2000;
const listeners = new Set();

function load() {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/** Appends a sample when the counts differ from the last one. */
export function recordVersionSample(byVersion, now = Date.now()) {
  const points = load();
  const counts = Object.fromEntries(byVersion.map((r) => [r.version ?? 'unknown', r.count]));
  const last = points[points.length - 1];
  if (!last || JSON.stringify(last.counts) !== JSON.stringify(counts)) {
    points.push({ t: now, counts });
    while (points.length > MAX_POINTS) points.shift();
    sessionStorage.setItem(KEY, JSON.stringify(points));
    for (const l of listeners) l();
  }
}

/** All samples, oldest first, plus a closing point at `now` so the last step reaches the present. */
export function versionHistory(now = Date.now()) {
  const points = load();
  if (!points.length) return [];
  return [...points, { t: now, counts: points[points.length - 1].counts }];
}

export function onVersionHistory(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Starts sampling (GET /api/v1/server carries the counts by version); returns a stop function. */
export function startVersionSampler() {
  let timer = null;
  let lastRun = 0;
  let stopped = false;
  const sample = async () => {
    timer = null;
    lastRun = Date.now();
    try {
      const server = await request('GET', '/server');
      if (!stopped) recordVersionSample(server.versions ?? []);
    } catch {
      // The next device report triggers another try; the chart just misses this sample.
    }
  };
  const schedule = () => {
    if (timer || stopped) return;
    timer = setTimeout(sample, Math.max(0, lastRun + MIN_INTERVAL_MS - Date.now()));
  };
  const off = onLive((ev) => {
    if (ev.type === 'resync' || ev.type.startsWith('device')) schedule();
  });
  return () => {
    stopped = true;
    off();
    if (timer) clearTimeout(timer);
  };
}

export function clearVersionHistory() {
  sessionStorage.removeItem(KEY);
}
