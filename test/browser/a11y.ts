import type { Page } from 'playwright-core';

export interface TabStop {
  index: number;
  role: string;
  name: string;
  html: string;
}

const INTERACTIVE =
  'a[href], button, input:not([type="hidden"]), select, textarea, summary, [tabindex]:not([tabindex="-1"]), [contenteditable="true"]';

/**
 * Presses Tab from the top of the page until focus comes back to an element already visited
 * (or leaves the document), and returns each stop with its accessible role and name as the
 * browser's accessibility tree reports them (Playwright's aria snapshot).
 */
export async function walkTabOrder(page: Page, maxStops = 300): Promise<TabStop[]> {
  await page.evaluate(() => {
    for (const el of document.querySelectorAll('[data-tabstop]')) el.removeAttribute('data-tabstop');
    (document.activeElement as HTMLElement | null)?.blur();
    window.scrollTo(0, 0);
  });
  const stops: TabStop[] = [];
  for (let i = 0; i < maxStops; i++) {
    await page.keyboard.press('Tab');
    const seen = await page.evaluate((index) => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body || el === document.documentElement) return 'left';
      if (el.hasAttribute('data-tabstop')) return 'cycle';
      el.setAttribute('data-tabstop', String(index));
      return 'new';
    }, i);
    if (seen !== 'new') break;
    const loc = page.locator(`[data-tabstop="${i}"]`);
    const snapshot = await loc.ariaSnapshot();
    const first = snapshot.split('\n')[0] ?? '';
    const m = /^- ([\w-]+)(?: "((?:[^"\\]|\\.)*)")?/.exec(first);
    stops.push({
      index: i,
      role: m?.[1] ?? '',
      name: m?.[2] ?? '',
      html: await loc.evaluate((el) => el.outerHTML.slice(0, 160)),
    });
  }
  return stops;
}

/** Visible interactive elements that Tab never reached (run after walkTabOrder). */
export async function unreachedInteractive(page: Page): Promise<string[]> {
  return page.evaluate((selector) => {
    const out: string[] = [];
    for (const el of document.querySelectorAll<HTMLElement>(selector)) {
      const visible = el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
      const disabled = (el as HTMLButtonElement).disabled === true;
      if (visible && !disabled && !el.hasAttribute('data-tabstop')) out.push(el.outerHTML.slice(0, 160));
    }
    return out;
  }, INTERACTIVE);
}
