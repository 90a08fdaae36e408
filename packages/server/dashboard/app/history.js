/**
 * Devices-per-version samples for the versions-over-time chart. The server keeps no history of
 * its own (Prometheus does: flotilla_devices_by_version), so the dashboard records a sample each
 * time the fleet totals change, kept for the browser tab's life in sessionStorage.
 */
const KEY = 'flotilla.version-history';
const MAX_POINTS = 720;

function load() {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? '[]');
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/** Appends a sample when the counts differ from the last one; returns all samples, oldest first. */
export function recordVersionSample(byVersion, now = Date.now()) {
  const points = load();
  const counts = Object.fromEntries(byVersion.map((r) => [r.version ?? 'unknown', r.count]));
  const last = points[points.length - 1];
  if (!last || JSON.stringify(last.counts) !== JSON.stringify(counts)) {
    points.push({ t: now, counts });
    while (points.length > MAX_POINTS) points.shift();
    sessionStorage.setItem(KEY, JSON.stringify(points));
  }
  // A closing point at "now" keeps the last step visible up to the present.
  return [...points, { t: now, counts }].filter((p, i, a) => i === 0 || p.t > a[i - 1].t);
}
