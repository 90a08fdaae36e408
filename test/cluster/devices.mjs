// Simulated devices for `cluster-test` (the real agent, `flotilla-sim`, one child process) and the
// check that counts: every report a device saw acknowledged is in the store exactly once.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnGroup, waitFor } from './processes.mjs';

export const SIM = fileURLToPath(new URL('../../simulators/fleet/dist/bin/flotilla-sim.js', import.meta.url));

/**
 * `flotilla-sim` with `--history`: each device appends the reports the broker acknowledged.
 * Resolves with its `--json` summary once every device is up (bounded by `budgetMs`).
 * @param {{ apiUrl: string, token: string, devices: number, mqttUrl: string, dir: string,
 *   release: string, prefix: string, budgetMs: number }} o
 */
export async function startDevices(o) {
  const history = join(o.dir, 'acknowledged.jsonl');
  const child = spawnGroup(
    'devices',
    process.execPath,
    [
      SIM,
      '--server',
      o.apiUrl,
      '--devices',
      String(o.devices),
      '--mqtt',
      o.mqttUrl,
      '--release',
      o.release,
      '--prefix',
      o.prefix,
      '--dir',
      join(o.dir, 'sim'),
      '--history',
      history,
      '--json',
    ],
    {
      logFile: join(o.dir, 'sim.log'),
      stdout: 'pipe',
      // The token by environment: not in the process list.
      env: { ...process.env, FLOTILLA_TOKEN: o.token },
    },
  );
  let out = '';
  child.proc.stdout?.on('data', (d) => {
    out += d;
  });
  const line = await waitFor(
    `${o.devices} simulated devices starting`,
    () => out.split('\n').find((l) => l.startsWith('{')),
    {
      budgetMs: o.budgetMs,
      everyMs: 500,
      abort: () => (child.running() ? null : `flotilla-sim exited: ${child.logTail()}`),
    },
  );
  return { child, history, summary: JSON.parse(line) };
}

/**
 * The devices' own record: (device, eventId) pairs the broker acknowledged, per device. A device
 * may send an event twice (a resend before its outbox entry was removed): one pair all the same.
 * @param {string} file
 * @returns {Map<string, Set<string>>}
 */
export function readAcknowledged(file) {
  /** @type {Map<string, Set<string>>} */
  const byDevice = new Map();
  if (!existsSync(file)) return byDevice;
  const lines = readFileSync(file, 'utf8').split('\n');
  for (const [i, line] of lines.entries()) {
    if (!line) continue;
    // A line cut by the simulator's end (no newline after it) was never a finished record.
    if (i === lines.length - 1) break;
    const r = JSON.parse(line);
    const set = byDevice.get(r.deviceId) ?? new Set();
    set.add(r.eventId);
    byDevice.set(r.deviceId, set);
  }
  return byDevice;
}

/**
 * The events the store holds for one device, as the API lists them (`GET
 * /api/v1/devices/:id/history`, newest first, paged by `until`): eventId → times listed.
 * @param {(path: string) => Promise<any>} get
 * @param {string} deviceId
 */
export async function storedEvents(get, deviceId) {
  /** @type {Map<string, number>} */
  const counts = new Map();
  const LIMIT = 1000;
  let until = '';
  /** Entries of the last page at its oldest time: the next page (until = that time + 1 ms) repeats them. */
  let boundary = new Map();
  for (let page = 0; page < 1000; page++) {
    const q = `limit=${LIMIT}${until ? `&until=${encodeURIComponent(until)}` : ''}`;
    const { items } = await get(`/devices/${encodeURIComponent(deviceId)}/history?${q}`);
    const oldest = items.at(-1)?.ts;
    const nextBoundary = new Map();
    for (const item of items) {
      const key = `${item.source} ${item.ref} ${item.ts}`;
      if (item.ts === oldest) nextBoundary.set(key, (nextBoundary.get(key) ?? 0) + 1);
      const repeat = boundary.get(key) ?? 0;
      if (repeat > 0) {
        boundary.set(key, repeat - 1);
        continue;
      }
      if (item.source === 'event') counts.set(item.ref, (counts.get(item.ref) ?? 0) + 1);
    }
    if (items.length < LIMIT) return counts;
    boundary = nextBoundary;
    // Exclusive `until`: one ms past the oldest time, so entries sharing it are not skipped.
    until = new Date(Date.parse(oldest) + 1).toISOString();
  }
  throw new Error(`device ${deviceId}: more than 1000 pages of history`);
}

/**
 * Lost = acknowledged to the device but not in the store; duplicated = listed more than once.
 * Reports still being written when the devices stop get `settleMs` to appear before they count
 * as lost (re-read, never assumed).
 * @param {{ get: (path: string) => Promise<any>, acknowledged: Map<string, Set<string>>,
 *   deviceIds: string[], settleMs: number }} o
 */
export async function compareHistories(o) {
  const end = Date.now() + o.settleMs;
  let pending = o.deviceIds;
  /** @type {Map<string, Map<string, number>>} */
  const stored = new Map();
  for (;;) {
    for (const id of pending) stored.set(id, await storedEvents(o.get, id));
    const missing = pending.filter((id) =>
      [...(o.acknowledged.get(id) ?? [])].some((e) => !stored.get(id)?.has(e)),
    );
    if (missing.length === 0 || Date.now() > end) break;
    pending = missing;
    await new Promise((r) => setTimeout(r, 1000));
  }
  let acknowledged = 0;
  let lost = 0;
  let duplicated = 0;
  /** @type {string[]} */
  const examples = [];
  for (const id of o.deviceIds) {
    const mine = o.acknowledged.get(id) ?? new Set();
    const theirs = stored.get(id) ?? new Map();
    acknowledged += mine.size;
    for (const eventId of mine)
      if (!theirs.has(eventId)) {
        lost++;
        if (examples.length < 5) examples.push(`${id} lost ${eventId}`);
      }
    for (const [eventId, n] of theirs)
      if (n > 1) {
        duplicated += n - 1;
        if (examples.length < 5) examples.push(`${id} has ${eventId} ${n} times`);
      }
  }
  return { acknowledged, lost, duplicated, examples };
}
