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
 * browser's accessibility tree reports them.
 */
export async function walkTabOrder(page: Page, maxStops = 300): Promise<TabStop[]> {
  // Tab continues from the last focused element, so start from a focusable marker at the very top.
  await page.evaluate(() => {
    for (const el of document.querySelectorAll('[data-tabstop]')) el.removeAttribute('data-tabstop');
    const start = document.createElement('span');
    start.tabIndex = -1;
    start.id = 'a11y-walk-start';
    document.body.prepend(start);
    start.focus();
  });
  // The browser's own accessibility tree (Chrome DevTools Protocol) names each stop.
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('Accessibility.enable');
    const stops: TabStop[] = [];
    for (let i = 0; i < maxStops; i++) {
      await page.keyboard.press('Tab');
      if (i === 0) await page.evaluate(() => document.getElementById('a11y-walk-start')?.remove());
      const seen = await page.evaluate((index) => {
        const el = document.activeElement as HTMLElement | null;
        if (!el || el === document.body || el === document.documentElement) return 'left';
        if (el.hasAttribute('data-tabstop')) return 'cycle';
        el.setAttribute('data-tabstop', String(index));
        return 'new';
      }, i);
      if (seen !== 'new') break;
      const { root } = await cdp.send('DOM.getDocument', { depth: 0 });
      const { nodeId } = await cdp.send('DOM.querySelector', {
        nodeId: root.nodeId,
        selector: `[data-tabstop="${i}"]`,
      });
      const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { nodeId, fetchRelatives: false });
      const ax = nodes.find((n) => !n.ignored) ?? nodes[0];
      stops.push({
        index: i,
        role: String(ax?.role?.value ?? ''),
        name: String(ax?.name?.value ?? ''),
        html: await page.locator(`[data-tabstop="${i}"]`).evaluate((el) => el.outerHTML.slice(0, 160)),
      });
    }
    return stops;
  } finally {
    await cdp.detach().catch(() => undefined);
  }
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
