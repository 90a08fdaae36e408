import { toMs } from './format.js';

/**
 * @typedef {object} TimelineRow
 * @property {string} key
 * @property {number | null} t epoch ms
 * @property {number} [seq]
 * @property {string} kind 'offered' or a device event kind
 * @property {string | null} [deploymentId]
 * @property {string} [version]
 * @property {{ done: number, total: number }} [progress]
 * @property {{ code: string, message: string }} [reason]
 * @property {unknown} [detail]
 */

/**
 * Merges device events with the server's offers and folds runs of progress events into one line.
 * @param {Array<Record<string, any>>} events as the API lists them (`{ id, body }`) or bare bodies
 * @param {Array<Record<string, any>>} deployments the device's deployments (`offeredAt`, `release`, …)
 * @returns {TimelineRow[]} newest first
 */
export function buildTimeline(events, deployments) {
  /** @type {TimelineRow[]} */
  const rows = [];
  for (const d of deployments) {
    if (d.offeredAt)
      rows.push({
        key: `offer-${d.id}`,
        t: toMs(d.offeredAt),
        kind: 'offered',
        deploymentId: d.id,
        version: d.release ?? d.version,
        detail: d.rolloutName ?? d.rolloutId,
      });
  }
  for (const e of events) {
    const b = e.body ?? e;
    rows.push({
      key: `ev-${e.id ?? b.eventId}`,
      t: toMs(b.ts),
      seq: b.seq,
      kind: b.kind,
      deploymentId: b.deploymentId,
      version: b.version,
      progress: b.progress,
      reason: b.reason,
      detail: b.detail,
    });
  }
  rows.sort((a, b) => b.t - a.t || (b.seq ?? 0) - (a.seq ?? 0));
  // Newest first: keep only the latest progress line of each uninterrupted run.
  /** @type {TimelineRow[]} */
  const out = [];
  for (const r of rows) {
    const prev = out[out.length - 1];
    if (
      prev &&
      prev.kind === r.kind &&
      (r.kind === 'download-progress' || r.kind === 'install-progress') &&
      prev.deploymentId === r.deploymentId
    )
      continue;
    out.push(r);
  }
  return out;
}
