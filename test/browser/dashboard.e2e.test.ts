import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { zipSync } from 'fflate';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CRITICAL,
  HIGH,
  MEDIUM,
  osvRecord,
  osvZip,
  rootfsTar,
} from '../../packages/server/test/vulns/fixtures.js';
import { unreachedInteractive, walkTabOrder } from './a11y.js';
import { type Browser, openBrowser } from './chromium.js';
import { contrastRatio } from './contrast.js';
import { collectPageErrors, dashboardPage, lacksBrowser, SHOTS } from './dashboard-page.js';
import { type DashboardWorld, registerPendingDevice, startDashboardWorld } from './world.js';

/**
 * The operator dashboard in headless Chromium against a real server and simulated devices that
 * run the real agent. Screenshots land in test-output/dashboard/ (kept by CI) for people to look at.
 */
const docs = (f: string) => fileURLToPath(new URL(`../../docs/${f}`, import.meta.url));
const DEVICES = 4;

let w: DashboardWorld;
let b: Browser;
let page: Page;
let pageErrors: string[] = [];
let ui: ReturnType<typeof dashboardPage>;

async function createRollout(name: string, release: string, phases: unknown[]) {
  const r = await w.api<{ id: string }>(
    'POST',
    '/rollouts',
    {
      name,
      release,
      policy: { target: { devices: w.deviceIds }, phases, maxConcurrent: 10, deviceTimeoutSeconds: 300 },
    },
    w.operatorToken,
  );
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id;
}

/** Records every distinct text a selector shows, from inside the page (no polling gaps). */
async function recordTexts(selector: string) {
  await page.evaluate((sel) => {
    const seen: string[] = [];
    (window as unknown as { __texts: string[] }).__texts = seen;
    const note = () => {
      const t = document.querySelector(sel)?.textContent?.trim();
      if (t && seen[seen.length - 1] !== t) seen.push(t);
    };
    note();
    new MutationObserver(note).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
    });
  }, selector);
  return () => page.evaluate(() => (window as unknown as { __texts: string[] }).__texts);
}

describe.skipIf(lacksBrowser)('operator dashboard in headless Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    w = await startDashboardWorld(DEVICES);
    await w.world.publish('1.1.0');
    await w.world.publish('1.2.0-bad');
    b = await openBrowser(w.origin);
    page = b.page;
    // Script errors and CSP violations land in pageErrors (asserted empty at the end).
    pageErrors = await collectPageErrors(page);
    ui = dashboardPage(page, w.origin);
  }, 240_000);

  afterAll(async () => {
    await b?.close();
    await w?.close();
  });

  it('refuses a wrong token and signs in with an operator token', async () => {
    await page.goto(`${w.origin}/`);
    await page.getByLabel('API token').waitFor();
    const stops = await walkTabOrder(page);
    expect(stops.map((x) => [x.role, x.name])).toEqual([
      ['textbox', 'API token'],
      ['button', 'Sign in'],
    ]);
    await ui.shot('01-sign-in');
    await page.getByLabel('API token').fill('flt_not_a_real_token_at_all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('not valid');
    const apiCalls: string[] = [];
    const record = (r: { url(): string }) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/v1/') && u.pathname !== '/api/v1/events')
        apiCalls.push(u.pathname + u.search);
    };
    page.on('request', record);
    await ui.signIn(w.operatorToken);
    // A marker that a page reload would wipe: checked at the end (live updates, no reloads).
    await page.evaluate(() => {
      (window as unknown as { __noReload: string }).__noReload = 'still here';
    });
    await expect
      .poll(() => page.locator('[data-stat="online"]').textContent(), { timeout: 20_000 })
      .toBe(String(DEVICES));
    await expect(page.locator('.role').textContent()).resolves.toBe('operator');
    // The header names the token (from GET /auth/whoami), and the fleet page reads the server's
    // whole-fleet summary instead of counting a page of devices or probing routes for the role.
    await expect(page.locator('header strong').first().textContent()).resolves.toBe('ops alice');
    page.off('request', record);
    expect(apiCalls).toContain('/api/v1/auth/whoami');
    expect(apiCalls).toContain('/api/v1/fleet/summary');
    expect(apiCalls.filter((c) => /^\/api\/v1\/(tokens|provisioning-tokens)\b/.test(c))).toEqual([]);
    expect(apiCalls.filter((c) => c.includes('limit=1000'))).toEqual([]);
    await ui.shot('02-fleet');
  });

  it('shows a rollout advance live while the devices update, and the operator approves each phase', async () => {
    const id = await createRollout('spring update', '1.1.0', [
      { name: 'canary', count: 1, requireApproval: true },
      { name: 'everyone', percent: 100, requireApproval: true },
    ]);
    await ui.go(`#/rollouts/${id}`);
    await expect.poll(ui.statusOfPage, { timeout: 20_000 }).toBe('waiting-approval');
    const texts = await recordTexts('[data-testid="phase-0-counts"]');
    expect(await page.locator('[data-testid="phase-0-counts"]').textContent()).toContain('0 of 1 healthy');
    await ui.shot('03-rollout-waiting-approval');

    // Approve the canary with the keyboard only.
    const approve1 = page.getByRole('button', { name: 'Approve phase 1' });
    await approve1.focus();
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.locator('[data-testid="phase-0-counts"]').textContent(), { timeout: 90_000 })
      .toContain('1 of 1 healthy');
    // The page went through in-progress states on its own: the updates arrived over SSE.
    const seen = await texts();
    expect(seen.some((t) => /[1-9] in progress/.test(t))).toBe(true);
    expect(seen.at(-1)).toContain('1 of 1 healthy');

    await expect.poll(ui.statusOfPage, { timeout: 30_000 }).toBe('waiting-approval');
    await page.getByRole('button', { name: 'Approve phase 2' }).waitFor();
    await ui.shot('04-rollout-canary-done');
    await page.getByRole('button', { name: 'Approve phase 2' }).click();
    await expect.poll(ui.statusOfPage, { timeout: 20_000 }).not.toBe('waiting-approval');
    // Catch the rollout mid-flight for the screenshot, then let it finish.
    await expect
      .poll(() => page.locator('[data-testid="phase-1-counts"]').textContent(), { timeout: 30_000 })
      .toMatch(/[1-9] in progress|[1-9] of 3 healthy/);
    await ui.shot('05-rollout-in-progress');
    await expect.poll(ui.statusOfPage, { timeout: 120_000 }).toBe('completed');
    expect(await page.locator('[data-testid="phase-1-counts"]').textContent()).toContain('3 of 3 healthy');
    await ui.shot('06-rollout-completed');

    const r = await w.api<{ summary: { totals: { healthy: number } } }>('GET', `/rollouts/${id}`);
    expect(r.body.summary.totals.healthy).toBe(DEVICES);
  });

  it('shows why a bad release paused at canary, and the rollback reason on the device page', async () => {
    const id = await createRollout('bad release', '1.2.0-bad', [
      { name: 'canary', count: 1, errorThreshold: 0 },
      { name: 'rest', percent: 100 },
    ]);
    await ui.go(`#/rollouts/${id}`);
    const reason = page.locator('[data-testid="pause-reason"]');
    await reason.waitFor({ timeout: 120_000 });
    expect(await reason.textContent()).toMatch(
      /Paused automatically: 1 of 1 devices failed in canary \(100%\), above the error threshold of 0%/,
    );
    expect(await ui.statusOfPage()).toBe('paused');
    await ui.shot('07-rollout-paused-on-errors');

    // Follow the link of the device that rolled back.
    const row = page.locator('tr', { has: page.locator('.badge[data-value="rolled-back"]') }).first();
    const deviceId = (await row.locator('th a').textContent())!;
    await row.locator('th a').click();
    await page.getByRole('heading', { name: `Device ${deviceId}` }).waitFor();
    const callout = page.locator('[data-testid="rollback-reason"]');
    await expect
      .poll(() => callout.textContent(), { timeout: 30_000 })
      .toContain('app.service failed: exit code 3');
    await expect
      .poll(() => page.locator('li[data-kind="rolled-back"]').first().textContent())
      .toContain('app.service failed: exit code 3');
    // Offers come from the deployments resource, loaded apart from the events: wait for each.
    for (const kind of ['offered', 'installed', 'rebooting', 'rolled-back'])
      await expect
        .poll(() => page.locator(`li[data-kind="${kind}"]`).count(), { message: kind, timeout: 30_000 })
        .toBeGreaterThan(0);
    // It runs the previous release again, from the slot it came from.
    expect(await page.locator('[data-field="version"]').textContent()).toBe('1.1.0');
    await ui.shot('08-device-rolled-back');
  });

  it('releases page lists versions, channels, signatures, SBOMs and deltas', async () => {
    await ui.go('#/releases');
    for (const v of ['1.0.0', '1.1.0', '1.2.0-bad']) await page.locator(`tr[data-version="${v}"]`).waitFor();
    expect(await page.locator('tr[data-version="1.1.0"]').textContent()).toMatch(/1 signature/);
    const sbomLink = page.getByRole('link', { name: /Download the SBOM of 1\.1\.0/ });
    expect(await sbomLink.count()).toBe(1);
    // Artifacts need a credential: the link fetches with the signed-in token and saves the file.
    const [download] = await Promise.all([page.waitForEvent('download'), sbomLink.click()]);
    expect(download.suggestedFilename()).toBe('sbom-1.1.0.json');
    await ui.shot('09-releases');
  });

  it('vulnerabilities page shows the loaded data, the fleet exposure and a release with its findings', async () => {
    // A TEST-ONLY record made here (it names a package no demo image holds).
    const zip = zipSync({
      'TEST-ONLY-1.json': new TextEncoder().encode(
        JSON.stringify({
          id: 'TEST-ONLY-1',
          modified: '2026-01-01T00:00:00Z',
          affected: [
            {
              package: { ecosystem: 'npm', name: 'test-only-package' },
              ranges: [{ type: 'SEMVER', events: [{ introduced: '0' }] }],
            },
          ],
        }),
      ),
    });
    const imported = await fetch(`${w.origin}/api/v1/vulnerabilities/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.operatorToken}`, 'content-type': 'application/zip' },
      body: new Uint8Array(zip),
    });
    expect(imported.status, await imported.text()).toBe(200);
    await ui.go('#/vulnerabilities');
    await expect
      .poll(() => page.locator('[data-testid="vuln-status"]').textContent())
      .toMatch(/^1 records loaded/);
    await page.locator('table.vuln-fleet tbody tr').first().waitFor();
    await ui.go('#/releases');
    await page.getByRole('link', { name: 'Vulnerabilities of 1.1.0' }).click();
    await page.getByRole('heading', { name: 'Release 1.1.0' }).waitFor();
    await expect.poll(() => page.locator('[data-channel="prod"]').textContent()).toMatch(/passes policy/);
    await ui.shot('10-vulnerabilities');
  });

  it('lists a prod release an import made fail its policy, and sorts a release’s findings with their waivers', async () => {
    // A TEST-ONLY release with a dpkg database (the demo images hold no packages), clean when it
    // reaches prod; then a policy with a prod-only waiver, then records that affect it.
    const rootfs = mkdtempSync(join(tmpdir(), 'flotilla-browser-rootfs-'));
    const built = await fetch(
      `${w.origin}/api/v1/releases/build?name=TEST-ONLY-os&version=1.3.0&securityVersion=1&compatible=TEST-ONLY-board&format=ext4&partitionSize=4194304&input=tar`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${w.operatorToken}`, 'content-type': 'application/x-tar' },
        body: new Uint8Array(
          rootfsTar(rootfs, [
            { name: 'libssl3', version: '3.0.11-1~deb12u2', source: 'openssl' },
            { name: 'bash', version: '5.2.15-2+b2', source: 'bash (5.2.15-2)' },
            { name: 'libexpat1', version: '2.5.0-1', source: 'expat' },
          ]),
        ),
      },
    );
    rmSync(rootfs, { recursive: true, force: true });
    expect(built.status, await built.text()).toBe(201);
    for (const channel of ['staging', 'prod'])
      expect((await w.api('POST', '/releases/1.3.0/promote', { channel }, w.operatorToken)).status).toBe(200);
    const policy = await w.api('PUT', '/policy', {
      schemaVersion: 1,
      channels: { prod: { maxSeverity: 'medium' } },
      waivers: [
        {
          id: 'CVE-2026-9102',
          package: 'bash',
          reason: 'TEST-ONLY no shell reachable from outside',
          approvedBy: 'TEST-ONLY security',
          expires: new Date(Date.now() + 30 * 86_400_000).toISOString(),
          channels: ['prod'],
        },
      ],
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(201);

    await ui.go('#/vulnerabilities');
    const failing = page.locator('[data-testid="prod-failures"]');
    await expect
      .poll(() => failing.textContent())
      .toContain('None: every release in prod meets the prod policy');
    const imported = await fetch(`${w.origin}/api/v1/vulnerabilities/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.operatorToken}`, 'content-type': 'application/zip' },
      body: new Uint8Array(
        osvZip({
          'DSA-9101.json': osvRecord({
            id: 'DSA-9101',
            name: 'openssl',
            fixed: '3.0.13-1~deb12u1',
            cvss: CRITICAL,
          }),
          'DSA-9102.json': osvRecord({
            id: 'DSA-9102',
            aliases: ['CVE-2026-9102'],
            name: 'bash',
            fixed: '5.2.15-3',
            cvss: HIGH,
          }),
          'DSA-9103.json': osvRecord({ id: 'DSA-9103', name: 'expat', cvss: MEDIUM }),
        }),
      ),
    });
    expect(imported.status, await imported.text()).toBe(200);
    // The page updates on its own (the import's event): 1.3.0 is listed, the others are not.
    await failing.locator('li[data-version="1.3.0"]').waitFor({ timeout: 20_000 });
    expect(await failing.locator('li').count()).toBe(1);
    expect(await failing.textContent()).toMatch(/1 violation\b.*DSA-9101 in libssl3/);
    await ui.shot('10b-prod-failing-policy');

    await failing.getByRole('link', { name: /^Release 1\.3\.0: 1 violation of the prod policy/ }).click();
    await page.getByRole('heading', { name: 'Release 1.3.0' }).waitFor();
    await expect.poll(() => page.locator('[data-channel="prod"]').textContent()).toMatch(/1 violation$/);
    const table = page.locator('[data-testid="release-vulns"]');
    const order = () =>
      table.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
    await expect.poll(order).toEqual(['DSA-9101', 'DSA-9102', 'DSA-9103']); // most severe first
    // The waiver shows on its finding, for the channel it covers only.
    const waivedIn = (id: string) => table.locator(`tr[data-id="${id}"] td`).last().textContent();
    expect(await waivedIn('DSA-9102')).toBe('prod');
    expect(await waivedIn('DSA-9101')).toBe('—');
    const severity = table.getByRole('button', { name: 'Severity' });
    await severity.click();
    await expect.poll(order).toEqual(['DSA-9103', 'DSA-9102', 'DSA-9101']);
    expect(await table.locator('th[aria-sort="descending"]').textContent()).toBe('Severity');
    await table.getByRole('button', { name: 'Package' }).click();
    await expect.poll(order).toEqual(['DSA-9102', 'DSA-9103', 'DSA-9101']); // bash, libexpat1, libssl3
    expect(await table.locator('th[aria-sort="ascending"]').textContent()).toBe('Package');
    await ui.shot('10c-release-findings-sorted');
  });

  it('accepts a device that waits for acceptance', async () => {
    await registerPendingDevice(w, 'field-unit-7', 'flotilla-sim-board');
    await ui.go('#/');
    const accept = page.getByRole('button', { name: 'Accept field-unit-7' });
    await accept.waitFor({ timeout: 20_000 });
    // The version chart kept sampling while other pages were open: 1.0.0 gave way to 1.1.0.
    const rows = await page.locator('.chart tbody tr').allTextContents();
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const legend = await page.locator('.chart .legend').textContent();
    expect(legend).toContain('1.0.0 (0)');
    expect(legend).toContain(`1.1.0 (${DEVICES})`);
    await ui.shot('10-fleet-pending-device');
    await accept.click();
    await expect
      .poll(async () => (await w.api<{ status: string }>('GET', '/devices/field-unit-7')).body.status)
      .toBe('accepted');
    await expect.poll(() => accept.count()).toBe(0);
  });

  it('keeps the page alive throughout: no reload, nothing fetched from outside the server, no script errors', async () => {
    expect(await page.evaluate(() => (window as unknown as { __noReload?: string }).__noReload)).toBe(
      'still here',
    );
    expect(b.offsite).toEqual([]);
    expect(pageErrors).toEqual([]);
  });

  it('a viewer sees a rollout but is denied its actions, by the page and by the server', async () => {
    const rollouts = await w.api<{ items: { id: string; status: string }[] }>('GET', '/rollouts');
    const paused = rollouts.body.items.find((r) => r.status === 'paused')!;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await ui.signIn(w.viewerToken);
    await expect(page.locator('.role').textContent()).resolves.toBe('viewer');
    await ui.go(`#/rollouts/${paused.id}`);
    const resume = page.getByRole('button', { name: 'Resume rollout' });
    await resume.waitFor();
    expect(await resume.getAttribute('aria-disabled')).toBe('true');
    // aria-disabled keeps it focusable: a keyboard user reaches it and learns why it is refused.
    await resume.focus();
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.getByRole('alert').filter({ hasText: 'Denied' }).textContent())
      .toContain('a viewer token may not resume rollout');
    await ui.shot('11-viewer-denied');
    // The server says no on its own, whatever the page does.
    const direct = await page.evaluate(async (id) => {
      const token = sessionStorage.getItem('flotilla.token');
      const res = await fetch(`/api/v1/rollouts/${id}/resume`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{}',
      });
      return { status: res.status, body: await res.json() };
    }, paused.id);
    expect(direct.status).toBe(403);
    expect(direct.body.error.code).toBe('FLOTILLA_ERR_SERVER_FORBIDDEN');
    expect((await w.api<{ status: string }>('GET', `/rollouts/${paused.id}`)).body.status).toBe('paused');
  });

  it('every interactive element on every page is reachable by Tab and has an accessible name', async () => {
    const rollouts = await w.api<{ items: { id: string }[] }>('GET', '/rollouts');
    const pages = [
      '#/',
      '#/devices',
      `#/devices/${w.deviceIds[0]}`,
      '#/rollouts',
      `#/rollouts/${rollouts.body.items[0]!.id}`,
      '#/releases',
      '#/vulnerabilities',
    ];
    for (const hash of pages) {
      await ui.go(hash);
      await expect.poll(() => page.locator('[role="status"]', { hasText: /^Loading/ }).count()).toBe(0);
      if (hash === '#/rollouts' || hash === '#/devices') await ui.shot(`13-${hash.slice(2)}`);
      const stops = await walkTabOrder(page);
      expect(stops.length, hash).toBeGreaterThan(5);
      const nameless = stops.filter((s) => s.name.trim() === '');
      expect(nameless, `${hash}: focusable without an accessible name`).toEqual([]);
      expect(await unreachedInteractive(page), `${hash}: not reachable by Tab`).toEqual([]);
      // The skip link comes first and the main navigation right after it.
      expect(stops[0]!.name).toBe('Skip to content');
      expect(stops.slice(1, 5).map((s) => s.name)).toEqual(['Fleet', 'Devices', 'Rollouts', 'Releases']);
    }
  }, 180_000);

  it('the server exports every metric the alert rules and the Grafana dashboard use', async () => {
    const text = await (await fetch(`${w.origin}/metrics`)).text();
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const used = new Set(
      [
        readFileSync(docs('prometheus-alerts.yml'), 'utf8'),
        readFileSync(docs('grafana-dashboard.json'), 'utf8'),
      ].flatMap((t) =>
        [...t.matchAll(/\b(flotilla_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, '')),
      ),
    );
    const missing = [...used].filter((m) => !exported.has(m)).sort();
    // Every SLI of docs/observability.md is exported (the list of gaps shrank to nothing).
    expect(missing).toEqual([]);
    expect(used.size).toBeGreaterThanOrEqual(20);
  });

  it('a dashboard file that does not exist is a 404, not the app page served as JavaScript', async () => {
    const missing = await fetch(`${w.origin}/app/pages/no-such-page.js`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('FLOTILLA_ERR_SERVER_NOT_FOUND');
    const real = await fetch(`${w.origin}/app/main.js`);
    expect(real.status).toBe(200);
    expect(real.headers.get('content-type')).toMatch(/^text\/javascript/);
    await real.arrayBuffer();
  });

  it('the rendered main colours meet WCAG AA contrast', async () => {
    await ui.go('#/devices');
    await page.locator('tbody td .badge').first().waitFor();
    const colours = await page.evaluate(() => {
      const css = (sel: string, prop: string) => {
        const el = document.querySelector(sel);
        return el ? getComputedStyle(el).getPropertyValue(prop) : null;
      };
      return {
        body: [css('body', 'color'), css('body', 'background-color')],
        nav: [
          css('nav a[aria-current="page"]', 'color'),
          css('nav a[aria-current="page"]', 'background-color'),
        ],
        table: [css('tbody td', 'color'), css('table', 'background-color')],
        heading: [css('thead th', 'color'), css('thead th', 'background-color')],
        role: [css('.role', 'color'), css('.role', 'background-color')],
        badge: [css('tbody td .badge', 'color'), css('tbody td .badge', 'background-color')],
        hint: [css('p.muted', 'color'), css('body', 'background-color')],
        readonly: [css('.readonly', 'color'), css('.readonly', 'background-color')],
      };
    });
    for (const [what, [fg, bg]] of Object.entries(colours)) {
      expect(fg, what).toBeTruthy();
      expect(contrastRatio(fg!, bg!), what).toBeGreaterThanOrEqual(4.5);
    }
    await ui.shot('12-viewer-devices');
  });
});
