import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const docs = (f: string) => fileURLToPath(new URL(`../../docs/${f}`, import.meta.url));
const alertsFile = docs('prometheus-alerts.yml');
const dashboard = JSON.parse(readFileSync(docs('grafana-dashboard.json'), 'utf8'));
const doc = readFileSync(docs('observability.md'), 'utf8');

/** Metric names documented in docs/observability.md (the contract). */
const documented = new Set([...doc.matchAll(/`(flotilla_[a-z0-9_]+)/g)].map((m) => m[1]!));

/** Base metric names used by a PromQL expression (histogram series map to their histogram). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(flotilla_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, ''));
}

// Each `expr:` value, inline or a `|` block (ends at the next `key: ` line of the rule).
const alertExprs = [
  ...readFileSync(alertsFile, 'utf8').matchAll(/expr:[ \t]*(\|[\s\S]*?(?=\n[ \t]+[a-z_]+:(?:[ \t]|\n))|.*)/g),
].map((m) => m[1]!);
const panels = dashboard.panels.filter((p: { type: string }) => p.type !== 'row');
const dashboardExprs: string[] = panels.flatMap((p: { targets: { expr: string }[] }) =>
  p.targets.map((t) => t.expr),
);

const promtool = spawnSync('promtool', ['--version']).status === 0;

describe('alert rules and dashboard', () => {
  it('use only metrics documented in docs/observability.md', () => {
    expect(alertExprs.length).toBeGreaterThan(10);
    expect(dashboardExprs.length).toBeGreaterThan(20);
    const unknown = [...alertExprs, ...dashboardExprs].flatMap(metricsIn).filter((m) => !documented.has(m));
    expect([...new Set(unknown)]).toEqual([]);
  });

  it('cover every SLI of the issue (success rate, rollbacks, offer→healthy, online, image age, bytes, build/sign failures)', () => {
    const used = new Set([...alertExprs, ...dashboardExprs].flatMap(metricsIn));
    for (const m of [
      'flotilla_updates_total',
      'flotilla_rollbacks_total',
      'flotilla_offer_to_healthy_seconds',
      'flotilla_devices_online',
      'flotilla_fleet_oldest_image_age_seconds',
      'flotilla_artifact_bytes_served_total',
      'flotilla_image_builds_total',
      'flotilla_signing_total',
    ])
      expect(used, m).toContain(m);
  });

  it('the Grafana dashboard has unique panel ids and no overlapping panels on its 24-column grid', () => {
    const ids = dashboard.panels.map((p: { id: number }) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          const key = `${i},${j}`;
          expect(cells.get(key), `${p.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, p.title);
        }
    }
    // Every query names its data source through the import input, so the file imports anywhere.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's import placeholder, not a JS template.
    for (const p of panels) expect(p.datasource.uid, p.title).toBe('${DS_PROMETHEUS}');
  });

  it.skipIf(!promtool)(
    'promtool accepts the rules and their unit tests pass (alerts fire and stay quiet as intended)',
    () => {
      expect(execFileSync('promtool', ['check', 'rules', alertsFile], { encoding: 'utf8' })).toMatch(
        /SUCCESS/,
      );
      const tests = fileURLToPath(new URL('./observability/alerts.promtest.yml', import.meta.url));
      expect(existsSync(tests)).toBe(true);
      const run = spawnSync('promtool', ['test', 'rules', tests], { encoding: 'utf8' });
      expect(run.stdout + run.stderr).toMatch(/SUCCESS/);
      expect(run.status).toBe(0);
    },
  );
});
