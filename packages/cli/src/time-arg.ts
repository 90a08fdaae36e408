import { CliError } from './errors.js';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A time flag (`--since`, `--until`) as the ISO 8601 time the server takes: an ISO date or time as
 * written (a date alone is midnight UTC), or a duration before `now` (`30m`, `12h`, `7d`).
 */
export function timeArg(flag: string, text: string, now = Date.now()): string {
  const ago = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (ago) return new Date(now - Number(ago[1]) * UNIT_MS[ago[2] as keyof typeof UNIT_MS]).toISOString();
  const ms = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim())
    ? Date.parse(text.trim())
    : Number.NaN;
  if (Number.isNaN(ms)) throw new CliError('FLOTILLA_ERR_CLI_TIME', `${flag} ${text}`);
  return new Date(ms).toISOString();
}

/** A positive whole number flag (`--limit`). */
export function countArg(flag: string, text: string, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new CliError('FLOTILLA_ERR_CLI_USAGE', `${flag} ${text} (a whole number from 1 to ${max})`);
  return n;
}
