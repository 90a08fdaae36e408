/** Small display helpers; every time shown is also given in full (ISO, UTC) in a title/datetime. */

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function toMs(t) {
  if (t === null || t === undefined) return null;
  return typeof t === 'number' ? t : Date.parse(t);
}

export function iso(t) {
  const ms = toMs(t);
  return ms === null || Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}

export function ago(t, now = Date.now()) {
  const ms = toMs(t);
  if (ms === null || Number.isNaN(ms)) return '—';
  const s = Math.round((now - ms) / 1000);
  const abs = Math.abs(s);
  const unit =
    abs < 60
      ? [abs, 's']
      : abs < 3600
        ? [Math.round(abs / 60), 'min']
        : abs < 86400
          ? [Math.round(abs / 3600), 'h']
          : [Math.round(abs / 86400), 'd'];
  return s >= 0 ? `${unit[0]} ${unit[1]} ago` : `in ${unit[0]} ${unit[1]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function pct(n) {
  return `${Number.isInteger(n) ? n : n.toFixed(1)}%`;
}

export function shortHash(h) {
  return h ? `${h.slice(0, 12)}…` : '—';
}

/** Audit actors look like `token:ops alice(tok_…)`: show the token's name. */
export function actorName(actor) {
  const m = /^token:(.*)\(tok_[0-9a-f]+\)$/.exec(actor ?? '');
  return m ? m[1] : actor;
}
