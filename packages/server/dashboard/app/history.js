/**
 * Points of the versions-over-time chart. The server samples accepted devices per version on a
 * timer into a bounded table (GET /api/v1/fleet/versions/history), so the chart covers days,
 * whether or not anyone had the dashboard open; the fleet summary just loaded closes it at "now".
 */

/**
 * Server samples `[{ts, counts}]` and the current counts by version as chart points `[{t, counts}]`,
 * oldest first. A sample equal to the one before adds nothing to a step chart and is dropped.
 */
export function versionPoints(samples, byVersion, now = Date.now()) {
  const current = Object.fromEntries((byVersion ?? []).map((r) => [r.version ?? 'unknown', r.count]));
  const points = [];
  for (const s of [
    ...samples.map((x) => ({ t: Date.parse(x.ts), counts: x.counts })),
    { t: now, counts: current },
  ]) {
    const last = points[points.length - 1];
    if (last && sameCounts(last.counts, s.counts)) continue;
    points.push(s);
  }
  // The last step reaches the present.
  const last = points[points.length - 1];
  if (last && last.t !== now) points.push({ t: now, counts: last.counts });
  return points;
}

function sameCounts(a, b) {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] ?? 0) !== (b[k] ?? 0)) return false;
  return true;
}
