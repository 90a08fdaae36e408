import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { CHROMIUM_PATH } from './chromium.js';

/** Where the browser tests put a screenshot of every page (CI keeps test-output/ as artefacts). */
export const SHOTS = fileURLToPath(new URL('../../test-output/dashboard/', import.meta.url));

/** Debian's chromium (CI installs it); without a browser the dashboard's browser tests skip. */
export const lacksBrowser = !existsSync(CHROMIUM_PATH);
if (lacksBrowser)
  process.stderr.write(
    `skipping browser tests: no browser at ${CHROMIUM_PATH} (apt-get install -y chromium)\n`,
  );

/**
 * Collects the page's script errors and Content-Security-Policy violations (tests assert the list
 * stays empty). Chrome logs every non-2xx answer; those expected are asserted where they happen.
 */
export async function collectPageErrors(page: Page): Promise<string[]> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.addInitScript(() =>
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`),
    ),
  );
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  return errors;
}

/** What every dashboard test does with the page: screenshots, navigation, sign-in, the status shown. */
export function dashboardPage(page: Page, origin: string) {
  return {
    shot: (name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true }),
    go: async (hash: string) => {
      await page.evaluate((h) => {
        location.hash = h;
      }, hash);
      await page.locator('main h1').first().waitFor();
    },
    statusOfPage: () => page.locator('[data-field="status"] .badge').getAttribute('data-value'),
    signIn: async (token: string) => {
      await page.goto(`${origin}/`);
      await page.getByLabel('API token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
      await page.locator('[data-live="live"]').waitFor();
    },
  };
}
