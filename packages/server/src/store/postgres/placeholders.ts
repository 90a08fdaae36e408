/**
 * Rewrites the `?` placeholders of the shared SQL subset into PostgreSQL's `$1..$n`. A `?` inside a
 * string literal, a quoted identifier, a dollar-quoted body or a comment is text, not a
 * placeholder, and stays as written. Each SQL text is rewritten once (repositories reuse a few
 * hundred statements); the cache is bounded so generated SQL cannot grow it without end. A
 * long text (a multi-row statement, whose length follows its batch) is rewritten every time:
 * thousands of those, each up to hundreds of KiB, would hold hundreds of MiB.
 */
const cache = new Map<string, string>();
const CACHE_MAX = 2000;
const CACHED_LENGTH_MAX = 4096;

export function toPgPlaceholders(sql: string): string {
  const hit = cache.get(sql);
  if (hit !== undefined) return hit;
  const out = rewrite(sql);
  if (sql.length > CACHED_LENGTH_MAX) return out;
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(sql, out);
  return out;
}

function rewrite(sql: string): string {
  let out = '';
  let n = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const end = skipQuoted(sql, i);
    if (end > i) {
      out += sql.slice(i, end);
      i = end;
    } else if (c === '?') {
      out += `$${++n}`;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The index after the quoted run that starts at i, or i when none starts there. */
function skipQuoted(sql: string, i: number): number {
  const c = sql[i];
  const next = sql[i + 1];
  if (c === "'") return closeQuote(sql, i + 1, "'", isEscapeStringPrefix(sql, i));
  if (c === '"') return closeQuote(sql, i + 1, '"', false);
  if (c === '-' && next === '-') {
    const nl = sql.indexOf('\n', i);
    return nl < 0 ? sql.length : nl + 1;
  }
  if (c === '/' && next === '*') {
    const close = sql.indexOf('*/', i + 2);
    return close < 0 ? sql.length : close + 2;
  }
  if (c === '$') {
    // $tag$ ... $tag$ (tag may be empty); $1 is a parameter, not a quote.
    const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
    if (!m) return i;
    const close = sql.indexOf(m[0], i + m[0].length);
    return close < 0 ? sql.length : close + m[0].length;
  }
  return i;
}

/** Past the closing quote; a doubled quote is an escaped one (and a backslash is, in E'...'). */
function closeQuote(sql: string, from: number, q: string, backslashEscapes: boolean): number {
  let j = from;
  while (j < sql.length) {
    const c = sql[j];
    if (backslashEscapes && c === '\\') j += 2;
    else if (c === q && sql[j + 1] === q) j += 2;
    else if (c === q) return j + 1;
    else j++;
  }
  return sql.length;
}

/** E'...' (an escape string): the E stands alone as a token, right before the quote. */
function isEscapeStringPrefix(sql: string, quote: number): boolean {
  return /[eE]/.test(sql[quote - 1] ?? '') && !/[A-Za-z0-9_$]/.test(sql[quote - 2] ?? '');
}
