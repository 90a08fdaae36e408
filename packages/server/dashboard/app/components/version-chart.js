import { iso } from '../format.js';
import { html } from '../html.js';

/** Colour-blind-safe categorical palette (Okabe–Ito, darkened where needed for contrast on white). */
export const SERIES_COLOURS = [
  '#0072b2',
  '#d55e00',
  '#009e73',
  '#cc79a7',
  '#8a6d00',
  '#56b4e9',
  '#6b6b6b',
  '#e69f00',
];

/**
 * Stacked area chart of devices per version over time, drawn as plain SVG.
 * points: [{ t: ms, counts: { [version]: n } }] sorted by t. The same numbers are in a table
 * below the chart (collapsed) for screen readers and for copying.
 */
export function VersionChart({ points, width = 1100, height = 240 }) {
  if (!points || points.length === 0) return html`<p class="muted">No history yet.</p>`;
  const versions = [...new Set(points.flatMap((p) => Object.keys(p.counts)))].sort(compareVersions);
  const pad = { l: 40, r: 12, t: 10, b: 24 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const t0 = points[0].t;
  const t1 = points.length > 1 ? points[points.length - 1].t : t0 + 1;
  const maxY = Math.max(1, ...points.map((p) => versions.reduce((a, v) => a + (p.counts[v] ?? 0), 0)));
  const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * w;
  const y = (n) => pad.t + h - (n / maxY) * h;
  // Steps, not slopes: a device changes version at an instant.
  const stacked = points.map((p) => {
    let acc = 0;
    return versions.map((v) => {
      const lo = acc;
      acc += p.counts[v] ?? 0;
      return [lo, acc];
    });
  });
  const areaPath = (vi) => {
    const top = [];
    const bottom = [];
    points.forEach((p, i) => {
      const next = i + 1 < points.length ? points[i + 1].t : p.t;
      const [lo, hi] = stacked[i][vi];
      top.push(`${x(p.t)},${y(hi)}`, `${x(next)},${y(hi)}`);
      bottom.unshift(`${x(next)},${y(lo)}`, `${x(p.t)},${y(lo)}`);
    });
    return `M${top.join('L')}L${bottom.join('L')}Z`;
  };
  const ticks = [0, Math.round(maxY / 2), maxY].filter((v, i, a) => a.indexOf(v) === i);
  const last = points[points.length - 1];
  const summary = versions.map((v) => `${v}: ${last.counts[v] ?? 0}`).join(', ');
  return html`<figure class="chart">
    <svg viewBox=${`0 0 ${width} ${height}`} role="img" aria-label=${`Devices per version over time; now ${summary}`}>
      ${ticks.map(
        (n) => html`<g>
          <line x1=${pad.l} x2=${width - pad.r} y1=${y(n)} y2=${y(n)} class="grid" />
          <text x=${pad.l - 6} y=${y(n) + 4} text-anchor="end" class="axis">${n}</text>
        </g>`,
      )}
      ${versions.map((v, i) => html`<path d=${areaPath(i)} fill=${SERIES_COLOURS[i % SERIES_COLOURS.length]} fill-opacity="0.85"><title>${v}</title></path>`)}
      <text x=${pad.l} y=${height - 6} class="axis">${shortTime(t0, t1 - t0)}</text>
      <text x=${width - pad.r} y=${height - 6} text-anchor="end" class="axis">${shortTime(t1, t1 - t0)}</text>
    </svg>
    <figcaption>
      <ul class="legend">
        ${versions.map(
          (v, i) =>
            html`<li><span class="swatch" style=${`background:${SERIES_COLOURS[i % SERIES_COLOURS.length]}`} aria-hidden="true"></span>${v} (${last.counts[v] ?? 0})</li>`,
        )}
      </ul>
      <details>
        <summary>Data table</summary>
        <table>
          <thead><tr><th scope="col">Time (UTC)</th>${versions.map((v) => html`<th scope="col">${v}</th>`)}</tr></thead>
          <tbody>
            ${points.map((p) => html`<tr><td>${iso(p.t)}</td>${versions.map((v) => html`<td>${p.counts[v] ?? 0}</td>`)}</tr>`)}
          </tbody>
        </table>
      </details>
    </figcaption>
  </figure>`;
}

/** Time of day for a chart of hours; date and time once it spans a day or more. */
function shortTime(t, span) {
  const s = new Date(t).toISOString();
  return span >= 86_400_000 ? `${s.slice(5, 10)} ${s.slice(11, 16)} UTC` : `${s.slice(11, 19)} UTC`;
}

/** Semver-ish order so the stack is stable: 1.2.0 below 1.10.0; unknown ("none") first. */
export function compareVersions(a, b) {
  const pa = a.split(/[.+-]/).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  const pb = b.split(/[.+-]/).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if (pa[i] === undefined) return -1;
    if (pb[i] === undefined) return 1;
    if (pa[i] === pb[i]) continue;
    if (typeof pa[i] === 'number' && typeof pb[i] === 'number') return pa[i] - pb[i];
    return String(pa[i]) < String(pb[i]) ? -1 : 1;
  }
  return 0;
}
