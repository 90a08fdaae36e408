import { inventoryRow, stateRow } from '../store/repos/devices.js';
import { eventRow } from '../store/repos/events.js';
import type { SqlValue } from '../store/sql.js';
import { checkParams } from '../store/sql-params.js';
import type { Store } from '../store/store.js';
import type { Report } from './report.js';

/**
 * The batched write of reports (PostgreSQL, where each statement is a network round trip): a few
 * multi-row statements for a whole run of reports instead of several statements per report.
 */

/** A report's values as its statement binds them (what the store would refuse is refused here). */
function valuesOf(report: Report, now: number): SqlValue[] {
  switch (report.channel) {
    case 'state':
      return stateRow(report.deviceId, report.message);
    case 'inventory':
      return inventoryRow(report.deviceId, report.message);
    case 'events':
      return eventRow(report.deviceId, report.message, now);
    case 'connection':
      return [report.deviceId, report.node ?? null];
  }
}

/**
 * Throws (coded) what the store would refuse of this report's values — text with NUL, an inexact
 * integer, a time that is not one — so one bad report is dropped alone before it joins a batch.
 */
export function precheck(report: Report, now: number): void {
  const values = valuesOf(report, now);
  checkParams(values);
  if (values.some((v) => typeof v === 'number' && !Number.isFinite(v)))
    throw new Error(
      `a ${report.channel} report holds a number that is not one (a time that does not parse?)`,
    );
}

/** Which write a report makes to its device's row (an event: `seen`). */
const BIT = { state: 1, events: 2, inventory: 4, connection: 8 } as const;

/**
 * Splits reports (in arrival order) into runs whose writes to a device commute, so a run can be
 * written as one statement per kind in any order and end as the reports would in turn: a device
 * has at most one state, one inventory, any number of events — or else one connection change
 * alone (online and online_node follow the order). Events that name a deployment need no run of
 * their own: the event hook folds a run's events into each deployment in arrival order (see
 * EventHook). Returns index runs into reports.
 */
export function commutingRuns(reports: readonly Report[]): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  let writes = new Map<string, number>();
  const close = () => {
    if (run.length > 0) runs.push(run);
    run = [];
    writes = new Map();
  };
  reports.forEach((r, i) => {
    const had = writes.get(r.deviceId) ?? 0;
    const bit = BIT[r.channel];
    const clash =
      r.channel === 'connection'
        ? had !== 0
        : (had & BIT.connection) !== 0 || (had & bit & ~BIT.events) !== 0;
    if (clash) close();
    writes.set(r.deviceId, (writes.get(r.deviceId) ?? 0) | bit);
    run.push(i);
  });
  close();
  return runs;
}

/**
 * Writes one commuting run (see commutingRuns) with a statement per kind and chunk. Returns, in
 * order, whether each report changed something (false: a duplicate event, an offline that
 * changed nothing). Throws when any statement fails: the caller undoes the run.
 */
export async function writeRun(tx: Store, reports: readonly Report[], now: number): Promise<boolean[]> {
  const events: { deviceId: string; message: Extract<Report, { channel: 'events' }>['message'] }[] = [];
  const states: { id: string; message: Extract<Report, { channel: 'state' }>['message'] }[] = [];
  const inventories: { id: string; message: Extract<Report, { channel: 'inventory' }>['message'] }[] = [];
  const connections: { id: string; online: boolean; node?: string | undefined }[] = [];
  for (const r of reports) {
    if (r.channel === 'events') events.push({ deviceId: r.deviceId, message: r.message });
    else if (r.channel === 'state') states.push({ id: r.deviceId, message: r.message });
    else if (r.channel === 'inventory') inventories.push({ id: r.deviceId, message: r.message });
    else connections.push({ id: r.deviceId, online: r.online, node: r.node });
  }
  const freshEvents = (await tx.events.insertMany(events, now)).values();
  await tx.devices.applyStates(states, now);
  await tx.devices.applyInventories(inventories, now);
  // After the states: a device whose state already marked it seen now is not written again.
  await tx.devices.seenMany(
    events.map((e) => e.deviceId),
    now,
  );
  const changed = (await tx.devices.setOnlineMany(connections, now)).values();
  return reports.map((r) => {
    if (r.channel === 'events') return freshEvents.next().value === true;
    if (r.channel === 'connection') return changed.next().value === true;
    return true;
  });
}
