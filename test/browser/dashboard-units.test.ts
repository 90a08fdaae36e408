import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { versionPoints } from '../../packages/server/dashboard/app/history.js';
import {
  initialForm,
  newPhase,
  rolloutRequest,
} from '../../packages/server/dashboard/app/rollout-request.js';
import { buildTimeline } from '../../packages/server/dashboard/app/timeline.js';
import { createParser as createParserUntyped } from '../../packages/server/dashboard/vendor/eventsource-parser/index.js';
import { normalizePolicy } from '../../packages/server/src/rollout/index.js';
import { contrastRatio, parseColour, rootCustomProperties } from './contrast.js';

const css = readFileSync(new URL('../../packages/server/dashboard/styles.css', import.meta.url), 'utf8');
const vars = rootCustomProperties(css);
// The vendored copy is plain JS without its .d.ts: the package's types describe it.
const createParser = createParserUntyped as typeof import('eventsource-parser').createParser;

describe('contrast ratio computation', () => {
  it('matches the WCAG reference values', () => {
    expect(contrastRatio('#000000', '#ffffff')).toBeCloseTo(21, 5);
    expect(contrastRatio('#ffffff', '#ffffff')).toBeCloseTo(1, 5);
    // #777 on white is the classic just-failing grey (4.48:1).
    expect(contrastRatio('#777777', '#fff')).toBeCloseTo(4.48, 2);
    expect(contrastRatio('rgb(0, 0, 255)', '#ffffff')).toBeCloseTo(8.59, 2);
  });

  it('refuses translucent and unknown colours rather than guessing', () => {
    expect(() => parseColour('rgba(0, 0, 0, 0.5)')).toThrow(/translucent/);
    expect(() => parseColour('papayawhip')).toThrow(/not a colour/);
  });
});

describe('dashboard palette', () => {
  // Every text colour the stylesheet puts on a background (see styles.css).
  const TEXT_PAIRS: [string, string][] = [
    ['--text', '--bg'],
    ['--text', '--surface'],
    ['--muted', '--surface'],
    ['--muted', '--bg'],
    ['--accent', '--surface'],
    ['--accent', '--bg'],
    ['--accent-text', '--accent'],
    ['--accent-text', '--bad'],
    ['--ok', '--ok-bg'],
    ['--info', '--info-bg'],
    ['--warn', '--warn-bg'],
    ['--bad', '--bad-bg'],
    ['--neutral', '--neutral-bg'],
    ['--text', '--neutral-bg'],
    ['--ok', '--surface'],
    ['--warn', '--surface'],
  ];
  it.each(TEXT_PAIRS)('text %s on %s reaches 4.5:1 (WCAG AA)', (fg, bg) => {
    expect(contrastRatio(vars[fg]!, vars[bg]!)).toBeGreaterThanOrEqual(4.5);
  });

  // Bar segments and the focus ring are graphics: 3:1 against what surrounds them (WCAG 1.4.11).
  it.each([
    '--seg-ok',
    '--seg-info',
    '--seg-warn',
    '--seg-bad',
    '--seg-muted',
    '--focus',
  ])('graphic colour %s reaches 3:1 against the surface', (v) => {
    expect(contrastRatio(vars[v]!, vars['--surface']!)).toBeGreaterThanOrEqual(3);
  });
});

// The copy the browser loads (vendor/), not the package: the page runs what is committed.
describe('live stream parser (vendored eventsource-parser)', () => {
  const collect = (chunks: string[]) => {
    const out: { type: string; data: string; id: string | null }[] = [];
    const parser = createParser({
      onEvent: (e) => out.push({ type: e.event ?? 'message', data: e.data, id: e.id ?? null }),
    });
    for (const c of chunks) parser.feed(c);
    return out;
  };

  it('dispatches named events with their id and joins multi-line data', () => {
    expect(collect(['id: 7\nevent: rollout.updated\ndata: {"a":\ndata: 1}\n\n'])).toEqual([
      { type: 'rollout.updated', data: '{"a":\n1}', id: '7' },
    ]);
  });

  it('survives lines and CRLF pairs split across chunks', () => {
    const text = 'event: device.state\r\ndata: {"deviceId":"d1"}\r\n\r\n: keep-alive\r\n\r\ndata: x\r\n\r\n';
    const whole = collect([text]);
    for (let cut = 1; cut < text.length; cut++) {
      expect(collect([text.slice(0, cut), text.slice(cut)])).toEqual(whole);
    }
    expect(whole.map((e) => e.type)).toEqual(['device.state', 'message']);
  });

  it('ignores comments and does not dispatch an event without data', () => {
    expect(collect([': hello\n\nevent: nothing\n\n'])).toEqual([]);
  });
});

describe('device timeline', () => {
  const ev = (id: number, kind: string, ts: string, extra: Record<string, unknown> = {}) => ({
    id,
    body: { eventId: `e${id}`, seq: id, ts, kind, deploymentId: 'dep1', ...extra },
  });

  it('folds a run of progress events into the latest and keeps the rollback reason', () => {
    const rows = buildTimeline(
      [
        ev(1, 'offer-accepted', '2025-01-01T00:00:01Z'),
        ev(2, 'download-progress', '2025-01-01T00:00:02Z', { progress: { done: 1, total: 4 } }),
        ev(3, 'download-progress', '2025-01-01T00:00:03Z', { progress: { done: 4, total: 4 } }),
        ev(4, 'installed', '2025-01-01T00:00:04Z'),
        ev(5, 'rolled-back', '2025-01-01T00:00:05Z', {
          reason: { code: 'HEALTH', message: 'app.service failed: exit code 3' },
        }),
      ],
      [{ id: 'dep1', offeredAt: Date.parse('2025-01-01T00:00:00Z'), release: '1.2.0-bad', rolloutId: 'r1' }],
    );
    expect(rows.map((r) => r.kind)).toEqual([
      'rolled-back',
      'installed',
      'download-progress',
      'offer-accepted',
      'offered',
    ]);
    expect(rows[0]!.reason?.message).toBe('app.service failed: exit code 3');
    expect(rows[2]!.progress).toEqual({ done: 4, total: 4 });
  });
});

describe('vendored front-end libraries', () => {
  it('are byte-identical to the installed preact, htm and eventsource-parser packages', () => {
    const script = fileURLToPath(new URL('../../packages/server/dashboard/vendor.mjs', import.meta.url));
    const run = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/ok {4}vendor\/preact\.module\.js \(preact@10\./);
    expect(run.stdout).toMatch(/ok {4}vendor\/eventsource-parser\/parse\.js \(eventsource-parser@4\./);
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  it('index.html loads nothing from another origin', () => {
    const index = readFileSync(
      new URL('../../packages/server/dashboard/index.html', import.meta.url),
      'utf8',
    );
    expect(index).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect(index).not.toMatch(/"https?:\/\//);
  });
});

describe('new rollout form', () => {
  it('turns the whole form into a request the server accepts', () => {
    const form = {
      ...initialForm('1.1.0'),
      name: ' spring ',
      target: {
        hardware: 'board-a, board-b',
        tags: 'lab north',
        groups: '',
        versions: '1.0.0',
        channels: ['prod'],
        devices: '',
      },
      membership: 'dynamic',
      joinPhase: 'last',
      phases: [
        { ...newPhase('canary', 'count', '2'), requireApproval: true, soakSeconds: '600' },
        { ...newPhase('', 'percent', '10'), errorThreshold: '5' },
        newPhase('rest', 'count', '999'),
      ],
      ratePerMinute: '30',
      windows: [{ days: ['sat'], start: '02:00', durationMinutes: '120', utcOffset: '+01:00' }],
      autoRollback: true,
    };
    const body = rolloutRequest(form);
    expect(body).toEqual({
      name: 'spring',
      release: '1.1.0',
      policy: {
        target: {
          membership: 'dynamic',
          joinPhase: 'last',
          hardware: ['board-a', 'board-b'],
          tags: ['lab', 'north'],
          versions: ['1.0.0'],
          channels: ['prod'],
        },
        phases: [
          {
            name: 'canary',
            count: 2,
            successThreshold: 100,
            errorThreshold: 0,
            minExecuted: 1,
            soakSeconds: 600,
            requireApproval: true,
          },
          {
            percent: 10,
            successThreshold: 100,
            errorThreshold: 5,
            minExecuted: 1,
            soakSeconds: 0,
            requireApproval: false,
          },
          // The last phase takes the rest, whatever size was typed.
          {
            name: 'rest',
            percent: 100,
            successThreshold: 100,
            errorThreshold: 0,
            minExecuted: 1,
            soakSeconds: 0,
            requireApproval: false,
          },
        ],
        maxConcurrent: 50,
        deviceTimeoutSeconds: 7200,
        maintenanceWindows: [{ days: ['sat'], start: '02:00', durationMinutes: 120, utcOffset: '+01:00' }],
        autoRollback: true,
        rate: { kind: 'constant', perMinute: 30 },
      },
    });
    // The server's own policy check (schema and rules) accepts it, and refuses a broken one.
    expect(normalizePolicy(body.policy).phases).toHaveLength(3);
    expect(() => normalizePolicy({ ...body.policy, maxConcurrent: 0 })).toThrow();
  });

  it('the form as it opens is a valid request once a release is chosen', () => {
    const body = rolloutRequest(initialForm('1.0.0'));
    expect(normalizePolicy(body.policy).phases).toMatchObject([
      { name: 'canary', count: 1 },
      { name: 'everyone', percent: 100 },
    ]);
  });
});

describe('versions over time', () => {
  it('keeps the server samples where counts change and closes the chart at now with the live counts', () => {
    const samples = [
      { ts: '2026-01-01T00:00:00.000Z', counts: { '1.0.0': 4 } },
      { ts: '2026-01-01T00:05:00.000Z', counts: { '1.0.0': 4 } },
      { ts: '2026-01-01T00:10:00.000Z', counts: { '1.0.0': 1, '1.1.0': 3 } },
    ];
    const now = Date.parse('2026-01-02T00:00:00.000Z');
    expect(versionPoints(samples, [{ version: '1.1.0', count: 4 }], now)).toEqual([
      { t: Date.parse(samples[0]!.ts), counts: { '1.0.0': 4 } },
      { t: Date.parse(samples[2]!.ts), counts: { '1.0.0': 1, '1.1.0': 3 } },
      { t: now, counts: { '1.1.0': 4 } },
    ]);
    // Nothing changed since the last sample: its step is drawn on to now.
    expect(versionPoints(samples.slice(0, 1), [{ version: '1.0.0', count: 4 }], now)).toEqual([
      { t: Date.parse(samples[0]!.ts), counts: { '1.0.0': 4 } },
      { t: now, counts: { '1.0.0': 4 } },
    ]);
  });
});
