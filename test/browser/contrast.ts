/**
 * WCAG 2.x contrast: relative luminance of sRGB colours and the (L1 + 0.05) / (L2 + 0.05) ratio.
 * Accepts #rgb, #rrggbb and the rgb()/rgba() strings getComputedStyle returns.
 */
export type Rgb = [number, number, number];

export function parseColour(input: string): Rgb {
  const s = input.trim().toLowerCase();
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/.exec(s);
  if (hex) {
    const h = hex[1]!.length === 3 ? [...hex[1]!].map((c) => c + c).join('') : hex[1]!;
    return [0, 2, 4].map((i) => Number.parseInt(h.slice(i, i + 2), 16)) as Rgb;
  }
  const rgb = /^rgba?\(\s*(\d+)[,\s]+(\d+)[,\s]+(\d+)\s*(?:[,/]\s*([\d.]+%?)\s*)?\)$/.exec(s);
  if (rgb) {
    if (rgb[4] !== undefined && Number.parseFloat(rgb[4]) < 1 && !rgb[4].endsWith('%'))
      throw new Error(`translucent colour ${input}: blend it over its background first`);
    return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  }
  throw new Error(`not a colour: ${input}`);
}

function channel(c: number): number {
  const v = c / 255;
  return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
}

export function relativeLuminance([r, g, b]: Rgb): number {
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

export function contrastRatio(a: string, b: string): number {
  const la = relativeLuminance(parseColour(a));
  const lb = relativeLuminance(parseColour(b));
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

/** The custom properties of the `:root` rule of a stylesheet, e.g. { '--text': '#1a1d21' }. */
export function rootCustomProperties(css: string): Record<string, string> {
  const root = /:root\s*\{([^}]*)\}/.exec(css);
  if (!root) throw new Error('no :root rule');
  const out: Record<string, string> = {};
  for (const m of root[1]!.matchAll(/(--[\w-]+)\s*:\s*([^;]+);/g)) out[m[1]!] = m[2]!.trim();
  return out;
}
