import { createHash } from 'node:crypto';
import { ImageError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** Parses `8388608`, `8M`, `8MiB`, `512k`, `1G` (binary units) into bytes. */
export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text <= 0)
      throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${what} ${text}`);
    return text;
  }
  const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  if (!m)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${what} '${text}' (use e.g. 8M, 512k, 8388608)`);
  const bytes = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${what} '${text}'`);
  return bytes;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A name-based UUID (RFC 4122 layout, version 5 bits) from any text: stable across builds. */
export function uuidFromName(name: string): string {
  const bytes = createHash('sha256').update(`flotilla-uuid:${name}`).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isUuid(text: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(text);
}

/** ISO time at second precision, the form protocol's Timestamp accepts. */
export function isoSeconds(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
