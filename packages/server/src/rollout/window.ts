import type { MaintenanceWindow } from './policy.js';

const MINUTES_PER_WEEK = 7 * 1440;
const DAY_INDEX: Record<string, number> = { mon: 0, tue: 1, wed: 2, thu: 3, fri: 4, sat: 5, sun: 6 };

function offsetMinutes(utcOffset: string): number {
  const sign = utcOffset.startsWith('-') ? -1 : 1;
  const [h, m] = utcOffset.slice(1).split(':').map(Number);
  return sign * ((h ?? 0) * 60 + (m ?? 0));
}

/** Minute of the week (Monday 00:00 = 0) at `now` in a zone `offset` minutes from UTC. */
function minuteOfWeek(now: number, offset: number): number {
  const localMinutes = Math.floor(now / 60_000) + offset;
  // 1970-01-01 was a Thursday (index 3 when Monday is 0).
  return (((localMinutes + 3 * 1440) % MINUTES_PER_WEEK) + MINUTES_PER_WEEK) % MINUTES_PER_WEEK;
}

/** Is `now` inside one of the windows? No windows means always open. */
export function inMaintenanceWindow(windows: readonly MaintenanceWindow[], now: number): boolean {
  if (windows.length === 0) return true;
  return windows.some((w) => {
    const m = minuteOfWeek(now, offsetMinutes(w.utcOffset));
    const [hh, mm] = w.start.split(':').map(Number);
    return w.days.some((day) => {
      const start = (DAY_INDEX[day] ?? 0) * 1440 + (hh ?? 0) * 60 + (mm ?? 0);
      // Distance since this window last opened, wrapping over the week boundary.
      return (m - start + MINUTES_PER_WEEK) % MINUTES_PER_WEEK < w.durationMinutes;
    });
  });
}
