import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unreachedInteractive, walkTabOrder } from './a11y.js';
import { type Browser, openBrowser } from './chromium.js';
import { collectPageErrors, dashboardPage, lacksBrowser, SHOTS } from './dashboard-page.js';
import { type DashboardWorld, startDashboardWorld } from './world.js';

/**
 * Acting from the dashboard in headless Chromium against a real server and simulated devices
 * running the real agent: upload a release bundle, promote it, create a rollout from the policy
 * form (with the server's preview), watch it complete, pause, resume and abort another, edit a device's tags and
 * group, find one device among 10,000, read the audit log, manage tokens — with roles respected.
 * Screenshots of each page land in test-output/dashboard/ (kept by CI).
 */
const DEVICES = 4;
const BULK = 10_000;

let w: DashboardWorld;
let b: Browser;
let page: Page;
let pageErrors: string[] = [];
let ui: ReturnType<typeof dashboardPage>;

async function signOutAndIn(token: string) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await ui.signIn(token);
}

/** Clicks an action that asks for a confirmation, then confirms it. */
async function confirmAction(label: string) {
  await page.getByRole('button', { name: label, exact: true }).click();
  await page.getByRole('button', { name: `Confirm: ${label.toLowerCase()}` }).click();
}

/** Fills the rollout form's release and phases: a canary of one device, then everyone. */
async function fillRolloutForm(name: string, release: string, canaryApproval: boolean) {
  await ui.go('#/rollouts');
  await page.getByRole('link', { name: 'New rollout' }).click();
  await page.getByRole('heading', { name: 'New rollout' }).waitFor();
  await page.getByLabel('Rollout name').fill(name);
  const releaseSelect = page.getByLabel('Release', { exact: true });
  await releaseSelect.locator(`option[value="${release}"]`).waitFor({ state: 'attached' });
  await releaseSelect.selectOption(release);
  await page.getByLabel('Phase 1 name').fill('canary');
  await page.getByLabel('Phase 1 size by').selectOption('count');
  await page.getByLabel('Phase 1 size', { exact: true }).fill('1');
  if (canaryApproval) await page.getByLabel("Phase 1 needs an operator's approval to start").check();
  await page.getByLabel('Phase 2 name').fill('everyone');
  await page.getByLabel('Most devices updating at once').fill('10');
  await page.getByLabel('Per-device timeout (seconds)').fill('300');
}

async function createFromForm(): Promise<string> {
  await confirmAction('Create rollout');
  await page.waitForFunction(() => /^#\/rollouts\/ro_/.test(location.hash));
  await page.getByRole('heading', { name: /^Rollout / }).waitFor();
  return page.evaluate(() => location.hash.replace('#/rollouts/', ''));
}

describe.skipIf(lacksBrowser)('operator dashboard: acting from it, in headless Chromium', () => {
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    w = await startDashboardWorld(DEVICES);
    b = await openBrowser(w.origin);
    page = b.page;
    pageErrors = await collectPageErrors(page);
    ui = dashboardPage(page, w.origin);
    await ui.signIn(w.operatorToken);
  }, 240_000);

  afterAll(async () => {
    await b?.close();
    await w?.close();
  });

  it('uploads a release bundle with a progress bar, then promotes it after a confirmation', async () => {
    await ui.go('#/releases');
    await page.getByLabel('Bundle file (.flot)').setInputFiles(await w.world.bundle('1.1.0'));
    // Record every progress value the bar shows while the bytes go out.
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { __progress: string[] }).__progress = seen;
      new MutationObserver(() => {
        const bar = document.querySelector('[data-testid="upload-progress"] progress');
        const v = bar?.getAttribute('value');
        if (v && seen[seen.length - 1] !== v) seen.push(v);
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    });
    await page.getByRole('button', { name: 'Upload bundle' }).click();
    const done = page.locator('[data-testid="upload-done"]');
    await done.waitFor({ timeout: 60_000 });
    expect(await done.textContent()).toMatch(/Uploaded: release 1\.1\.0/);
    const progress = await page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toBe('100');
    await page.locator('tr[data-version="1.1.0"]').waitFor();
    await ui.shot('act-01-releases-uploaded');

    // Promotion cannot be taken back: it asks first, and Cancel sends nothing.
    // An uploaded release starts in dev.
    await page.getByRole('button', { name: 'Promote 1.1.0 to staging', exact: true }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect((await w.api<{ channels: string[] }>('GET', '/releases/1.1.0')).body.channels).toEqual(['dev']);
    await confirmAction('Promote 1.1.0 to staging');
    await expect
      .poll(async () => (await w.api<{ channels: string[] }>('GET', '/releases/1.1.0')).body.channels)
      .toContain('staging');
    await page.getByRole('button', { name: 'Promote 1.1.0 to prod', exact: true }).waitFor();
  });

  it('creates a rollout from the policy form with the server’s preview per phase, and watches it complete', async () => {
    await fillRolloutForm('form rollout', '1.1.0', false);
    // A window that is open the whole week: the rollout may start at once.
    await page.getByRole('button', { name: 'Add a maintenance window' }).click();
    for (const day of ['mon', 'tue', 'wed', 'thu', 'fri'])
      await page.getByRole('group', { name: 'Window 1 days' }).getByLabel(day).check();
    await page.getByLabel('Window 1 opens at (HH:MM)').fill('00:00');
    await page.getByLabel('Window 1 length (minutes)').fill(String(7 * 1440));
    await page.getByLabel(/Roll back automatically/).check();
    const preview = page.locator('[data-testid="rollout-preview"]');
    await expect.poll(() => preview.locator('tr[data-phase="1"] td').textContent()).toBe(String(DEVICES - 1));
    expect(await preview.locator('tr[data-phase="0"] td').textContent()).toBe('1');
    expect(await preview.textContent()).toContain(`${DEVICES} devices would take 1.1.0 now`);
    await ui.shot('act-02-rollout-form');

    const id = await createFromForm();
    await expect.poll(ui.statusOfPage, { timeout: 120_000 }).toBe('completed');
    expect(await page.locator('[data-testid="phase-1-counts"]').textContent()).toContain(
      `${DEVICES - 1} of ${DEVICES - 1} healthy`,
    );
    await ui.shot('act-03-rollout-completed');
    const r = await w.api<{
      policy: { maintenanceWindows: unknown[]; autoRollback: boolean; phases: unknown[] };
      summary: { totals: { healthy: number } };
    }>('GET', `/rollouts/${id}`);
    expect(r.body.summary.totals.healthy).toBe(DEVICES);
    expect(r.body.policy.autoRollback).toBe(true);
    expect(r.body.policy.maintenanceWindows).toEqual([
      {
        days: ['sat', 'sun', 'mon', 'tue', 'wed', 'thu', 'fri'],
        start: '00:00',
        durationMinutes: 10080,
        utcOffset: '+00:00',
      },
    ]);
    expect(r.body.policy.phases).toMatchObject([{ name: 'canary', count: 1 }, { name: 'everyone' }]);
  }, 240_000);

  it('pauses and resumes another rollout, then aborts it after a confirmation', async () => {
    await w.world.publish('1.2.0-bad');
    await fillRolloutForm('to be aborted', '1.2.0-bad', true);
    // Dynamic targets: devices that match later join the last phase.
    await page.getByLabel('Membership').selectOption('dynamic');
    await page.getByLabel('Devices that join later go to').selectOption('last');
    await expect
      .poll(() => page.locator('[data-testid="rollout-preview"] tr[data-phase="0"] td').textContent())
      .toBe('1');
    const id = await createFromForm();
    await expect.poll(ui.statusOfPage, { timeout: 30_000 }).toBe('waiting-approval');
    // Pause and resume can be taken back: no confirmation, the server's state follows each click.
    await page.getByRole('button', { name: 'Pause rollout', exact: true }).click();
    await expect.poll(ui.statusOfPage, { timeout: 30_000 }).toBe('paused');
    expect((await w.api<{ status: string }>('GET', `/rollouts/${id}`)).body.status).toBe('paused');
    await page.locator('[data-testid="pause-reason"]').waitFor();
    expect(await page.getByRole('button', { name: 'Pause rollout', exact: true }).count()).toBe(0);
    await ui.shot('act-04a-rollout-paused');
    await page.getByRole('button', { name: 'Resume rollout', exact: true }).click();
    // Resumed, it waits again for the canary's approval.
    await expect.poll(ui.statusOfPage, { timeout: 30_000 }).toBe('waiting-approval');
    expect((await w.api<{ status: string }>('GET', `/rollouts/${id}`)).body.status).toBe('waiting-approval');
    expect(await page.locator('[data-testid="pause-reason"]').count()).toBe(0);
    await page.getByRole('button', { name: 'Abort rollout', exact: true }).click();
    expect(await page.getByRole('alert').filter({ hasText: 'cannot be undone' }).count()).toBe(1);
    await ui.shot('act-04-rollout-abort-confirm');
    await page.getByRole('button', { name: 'Confirm: abort rollout' }).click();
    await expect.poll(ui.statusOfPage, { timeout: 30_000 }).toBe('aborted');
    await ui.shot('act-05-rollout-aborted');
    const r = await w.api<{ status: string; policy: { target: Record<string, string> } }>(
      'GET',
      `/rollouts/${id}`,
    );
    expect(r.body.status).toBe('aborted');
    expect(r.body.policy.target).toMatchObject({ membership: 'dynamic', joinPhase: 'last' });
  }, 120_000);

  it('edits a device’s tags and group', async () => {
    const id = w.deviceIds[0]!;
    await ui.go(`#/devices/${id}`);
    await page.getByLabel('Tags (comma separated)').fill('lab, north');
    await page.getByRole('textbox', { name: 'Group', exact: true }).fill('bench');
    await page.getByRole('button', { name: 'Save placement' }).click();
    await expect
      .poll(async () => (await w.api<{ tags: string[]; group: string }>('GET', `/devices/${id}`)).body)
      .toMatchObject({ tags: ['lab', 'north'], group: 'bench' });
    await ui.shot('act-06-device-placement');
    // The search finds it by its new tag.
    await ui.go('#/devices?tag=north');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    expect(await page.locator('tbody tr th').textContent()).toBe(id);
  });

  it('shows the versions over time the server sampled, across the rollout', async () => {
    await ui.go('#/');
    const legend = page.locator('.chart .legend');
    await expect.poll(() => legend.textContent(), { timeout: 20_000 }).toContain(`1.1.0 (${DEVICES})`);
    expect(await legend.textContent()).toContain('1.0.0 (0)');
    const samples = await w.api<{ items: { counts: Record<string, number> }[] }>(
      'GET',
      '/fleet/versions/history?hours=1',
    );
    expect(samples.body.items.some((s) => s.counts['1.0.0'] === DEVICES)).toBe(true);
    expect(samples.body.items.some((s) => s.counts['1.1.0'] === DEVICES)).toBe(true);
    await ui.shot('act-07-fleet-history');
  });

  it('a viewer sees the forms but cannot act: the page says so and the server answers 403', async () => {
    await signOutAndIn(w.viewerToken);
    await ui.go('#/releases');
    const upload = page.getByRole('button', { name: 'Upload bundle' });
    expect(await upload.getAttribute('aria-disabled')).toBe('true');
    // aria-disabled keeps it focusable: the keyboard reaches it and learns why it is refused.
    await upload.focus();
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.getByRole('alert').filter({ hasText: 'Denied' }).first().textContent())
      .toContain('a viewer token may not upload bundle');
    await ui.go('#/rollouts/new?release=1.1.0');
    expect(await page.getByRole('button', { name: 'Create rollout' }).getAttribute('aria-disabled')).toBe(
      'true',
    );
    await ui.go('#/audit');
    await page.getByRole('note').filter({ hasText: 'for admins' }).waitFor();
    const direct = await page.evaluate(async () => {
      const token = sessionStorage.getItem('flotilla.token');
      const res = await fetch('/api/v1/rollouts', {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ release: '1.1.0', policy: { phases: [{ percent: 100 }] } }),
      });
      return { status: res.status, body: await res.json() };
    });
    expect(direct.status).toBe(403);
    expect(direct.body.error.code).toBe('FLOTILLA_ERR_SERVER_FORBIDDEN');
  });

  it('an admin reads the audit log and creates and revokes a token', async () => {
    await signOutAndIn(w.adminToken);
    await ui.go('#/audit');
    for (const action of [
      'release.create',
      'release.promote',
      'rollout.create',
      'rollout.pause',
      'rollout.resume',
      'rollout.abort',
      'device.placement',
    ])
      await page.locator(`tr[data-action="${action}"]`).first().waitFor({ timeout: 20_000 });
    await ui.shot('act-08-audit');

    await ui.go('#/tokens');
    await page.getByLabel('Token name').fill('ci reader');
    await page.getByLabel('Role').selectOption('viewer');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = (await page.locator('[data-testid="new-token"] code').textContent())!;
    expect(secret.length).toBeGreaterThan(20);
    const who = await w.api<{ role: string }>('GET', '/auth/whoami', undefined, secret);
    expect(who.body.role).toBe('viewer');
    await confirmAction('Revoke ci reader');
    await expect.poll(() => page.locator('tr[data-token="ci reader"]').textContent()).toContain('revoked');
    expect((await w.api('GET', '/auth/whoami', undefined, secret)).status).toBe(401);
    await ui.shot('act-09-tokens');
  });

  it('finds one device among 10,000 by search: the server’s time for it is recorded and its plan uses an index', async () => {
    // 10,000 more devices, pre-registered as a factory list would be (their own hardware: no rollout takes them).
    for (let start = 0; start < BULK; start += 1000) {
      const devices = Array.from({ length: 1000 }, (_, k) => {
        const i = start + k;
        return {
          deviceId: `bulk-${String(i).padStart(5, '0')}`,
          publicKey: randomBytes(32).toString('hex'),
          hardware: 'TEST-ONLY-bulk-board',
          tags: [`site-${i % 40}`],
        };
      });
      const r = await w.api('POST', '/devices/bulk-register', { devices }, w.adminToken);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    await ui.go('#/devices');
    await expect
      .poll(() => page.locator('[data-testid="search-summary"]').textContent())
      .toContain(`of ${BULK + DEVICES}`);
    await ui.shot('act-10-devices-10k');
    // Pages come from the server with a cursor.
    await page.getByRole('button', { name: 'Next page' }).click();
    await expect
      .poll(() => page.locator('[data-testid="search-summary"]').textContent())
      .toContain(`Devices 51–100 of ${BULK + DEVICES}`);

    const wanted = 'bulk-07342';
    await page.getByLabel('Device id starts with').fill(wanted);
    await page.getByLabel('Hardware').fill('TEST-ONLY-bulk-board');
    const answer = page.waitForResponse((r) => r.url().includes(`q=${wanted}`));
    await page.getByRole('button', { name: 'Search' }).click();
    const res = await answer;
    expect(res.status()).toBe(200);
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    expect(await page.locator('tbody tr th').textContent()).toBe(wanted);
    expect(await page.locator('[data-testid="search-summary"]').textContent()).toContain('Devices 1–1 of 1');
    // The server's own time for the search (Server-Timing), kept with the screenshots; the test
    // asserts what makes it fast — the query plan walks indexes — not a time.
    const timing = /dur=([0-9.]+)/.exec(res.headers()['server-timing'] ?? '');
    expect(timing, res.headers()['server-timing']).not.toBeNull();
    writeFileSync(
      `${SHOTS}search-timing.json`,
      `${JSON.stringify({ devices: BULK + DEVICES, search: { q: wanted }, serverMs: Number(timing![1]) })}\n`,
    );
    process.stdout.write(`device search among ${BULK + DEVICES}: ${timing![1]} ms server time\n`);
    const plan = await w.sim.running.ctx.store.devices.explainList({
      q: wanted,
      hardware: 'TEST-ONLY-bulk-board',
      limit: 50,
      offset: 0,
    });
    expect(
      plan.filter((l) => /^SCAN devices$/.test(l)),
      plan.join(' | '),
    ).toEqual([]);
    expect(
      plan.some((l) => /INDEX|PRIMARY KEY/.test(l)),
      plan.join(' | '),
    ).toBe(true);
    await ui.shot('act-11-device-found');
  }, 180_000);

  it('every new page is reachable by keyboard with named controls, and nothing broke on the way', async () => {
    for (const hash of ['#/rollouts/new?release=1.1.0', '#/audit', '#/tokens', '#/devices?tag=north']) {
      await ui.go(hash);
      await expect.poll(() => page.locator('[role="status"]', { hasText: /^Loading/ }).count()).toBe(0);
      const stops = await walkTabOrder(page);
      expect(
        stops.filter((s) => s.name.trim() === ''),
        `${hash}: focusable without a name`,
      ).toEqual([]);
      expect(await unreachedInteractive(page), `${hash}: not reachable by Tab`).toEqual([]);
    }
    await ui.shot('act-12-rollout-form-empty');
    expect(b.offsite).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 180_000);
});
