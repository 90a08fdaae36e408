import type { FlotillaServer } from '../src/index.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (the subset prom-client writes): TYPE lines and samples. */
export function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    samples.push({ name: m[1]!, labels, value: raw === '+Inf' ? Infinity : Number(raw) });
  }
  return { types, samples };
}

/** Scrapes /metrics through the real route and reads samples by name and (a subset of) labels. */
export async function scrape(server: FlotillaServer) {
  const res = await server.app.inject({ method: 'GET', url: '/metrics' });
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`);
  const parsed = parseExposition(res.body);
  const matching = (name: string, labels: Record<string, string>) =>
    parsed.samples.filter(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
  return {
    ...parsed,
    /** Sum of the matching samples; 0 when none (counters not yet incremented). */
    value: (name: string, labels: Record<string, string> = {}) =>
      matching(name, labels).reduce((a, s) => a + s.value, 0),
    has: (name: string, labels: Record<string, string> = {}) => matching(name, labels).length > 0,
    series: (name: string) => parsed.samples.filter((s) => s.name === name),
  };
}
