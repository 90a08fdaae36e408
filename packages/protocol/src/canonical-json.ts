import { FlotillaError } from './errors.js';
import { LIMITS } from './limits.js';

/**
 * Canonical JSON for everything that is signed (RFC 8785 subset): object keys sorted by UTF-16
 * code units, no whitespace, strings escaped the way JSON.stringify does, and numbers restricted
 * to safe integers so no two implementations can disagree on a float's text.
 */
export type CanonicalValue =
  | null
  | boolean
  | number
  | string
  | CanonicalValue[]
  | { [key: string]: CanonicalValue };

export function canonicalize(value: unknown): string {
  return write(value, 0);
}

export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value));
}

function write(value: unknown, depth: number): string {
  if (depth > LIMITS.maxJsonDepth) throw new FlotillaError('FLOTILLA_ERR_JSON_TOO_DEEP');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value) || Object.is(value, -0)) {
        throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', `number ${value} is not a safe integer`);
      }
      return String(value);
    case 'string':
      if (!isWellFormed(value))
        throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', 'lone surrogate in string');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => write(v, depth + 1)).join(',')}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', 'only plain objects can be canonicalised');
      }
      const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${write(v, depth + 1)}`).join(',')}}`;
    }
    default:
      throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', `type ${typeof value} is not allowed`);
  }
}

function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const n = s.charCodeAt(i + 1);
      if (!(n >= 0xdc00 && n <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

export interface ParseOptions {
  maxBytes?: number;
  maxDepth?: number;
}

/**
 * A strict, bounded JSON parser for untrusted input. Unlike JSON.parse it refuses duplicate keys
 * (two parsers could otherwise read different values from the same signed bytes), bounds size and
 * nesting before any work is done, and never builds prototypes from `__proto__` keys.
 */
export function parseJson(input: string | Uint8Array, opts: ParseOptions = {}): unknown {
  const maxBytes = opts.maxBytes ?? LIMITS.maxDocumentBytes;
  const maxDepth = opts.maxDepth ?? LIMITS.maxJsonDepth;
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes)
      throw new FlotillaError('FLOTILLA_ERR_JSON_TOO_LARGE', `over ${maxBytes} bytes`);
    text = input;
  } else {
    if (input.byteLength > maxBytes)
      throw new FlotillaError('FLOTILLA_ERR_JSON_TOO_LARGE', `over ${maxBytes} bytes`);
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch (cause) {
      throw new FlotillaError('FLOTILLA_ERR_JSON_MALFORMED', 'not valid UTF-8', { cause });
    }
  }
  return new StrictParser(text, maxDepth).parseDocument();
}

class StrictParser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  parseDocument(): unknown {
    this.skipWs();
    const value = this.parseValue(0);
    this.skipWs();
    if (this.pos !== this.text.length) this.fail('trailing characters');
    return value;
  }

  private fail(why: string): never {
    throw new FlotillaError('FLOTILLA_ERR_JSON_MALFORMED', `${why} at offset ${this.pos}`);
  }

  private skipWs(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  private parseValue(depth: number): unknown {
    if (depth > this.maxDepth)
      throw new FlotillaError('FLOTILLA_ERR_JSON_TOO_DEEP', `deeper than ${this.maxDepth}`);
    const c = this.text[this.pos];
    if (c === '{') return this.parseObject(depth);
    if (c === '[') return this.parseArray(depth);
    if (c === '"') return this.parseString();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.parseNumber();
    return this.fail('unexpected character');
  }

  private literal<T>(word: string, value: T): T {
    if (this.text.startsWith(word, this.pos)) {
      this.pos += word.length;
      return value;
    }
    return this.fail('bad literal');
  }

  private parseNumber(): number {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.pos, this.pos + 400));
    if (!m) return this.fail('bad number');
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private parseString(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = '';
    let start = this.pos;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c === 0x5c) {
        out += t.slice(start, this.pos);
        const e = t[this.pos + 1];
        const simple: Record<string, string> = {
          '"': '"',
          '\\': '\\',
          '/': '/',
          b: '\b',
          f: '\f',
          n: '\n',
          r: '\r',
          t: '\t',
        };
        if (e !== undefined && e in simple) {
          out += simple[e];
          this.pos += 2;
        } else if (e === 'u') {
          const hex = t.slice(this.pos + 2, this.pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad unicode escape');
          out += String.fromCharCode(Number.parseInt(hex, 16));
          this.pos += 6;
        } else this.fail('bad escape');
        start = this.pos;
        continue;
      }
      this.pos++;
    }
    return this.fail('unterminated string');
  }

  private parseArray(depth: number): unknown[] {
    this.pos++;
    const out: unknown[] = [];
    this.skipWs();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      out.push(this.parseValue(depth + 1));
      this.skipWs();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') this.fail('expected , or ]');
    }
  }

  private parseObject(depth: number): Record<string, unknown> {
    this.pos++;
    const out: Record<string, unknown> = Object.create(null);
    this.skipWs();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return { ...out };
    }
    const seen = new Set<string>();
    for (;;) {
      this.skipWs();
      if (this.text[this.pos] !== '"') this.fail('expected a key');
      const key = this.parseString();
      if (seen.has(key)) throw new FlotillaError('FLOTILLA_ERR_JSON_DUPLICATE_KEY', JSON.stringify(key));
      seen.add(key);
      this.skipWs();
      if (this.text[this.pos++] !== ':') this.fail('expected :');
      this.skipWs();
      Object.defineProperty(out, key, {
        value: this.parseValue(depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipWs();
      const c = this.text[this.pos++];
      if (c === '}') {
        // Hand back a plain object; `__proto__` stays an own data property, never a prototype.
        const plain: Record<string, unknown> = {};
        for (const k of Object.keys(out))
          Object.defineProperty(plain, k, {
            value: out[k],
            enumerable: true,
            writable: true,
            configurable: true,
          });
        return plain;
      }
      if (c !== ',') this.fail('expected , or }');
    }
  }
}

/**
 * Parses a signed document that must arrive in canonical form. Any other spelling of the same
 * value (whitespace, escapes, key order, `3.0` for `3`) is refused: signed bytes have exactly one
 * text, so no reader can be shown a different document than the signer saw.
 */
export function parseCanonical(input: string | Uint8Array, opts: ParseOptions = {}): unknown {
  const value = parseJson(input, opts);
  const text = typeof input === 'string' ? input : new TextDecoder().decode(input);
  let canonical: string;
  try {
    canonical = canonicalize(value);
  } catch (cause) {
    throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', 'document is not in canonical form', { cause });
  }
  if (canonical !== text)
    throw new FlotillaError('FLOTILLA_ERR_NOT_CANONICAL', 'document is not in canonical form');
  return value;
}
