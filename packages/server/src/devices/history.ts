import type { AuditEntry } from '../store/repos/audit.js';
import type { DeploymentRow } from '../store/repos/deployments.js';
import type { StoredEvent } from '../store/repos/events.js';
import type { Store } from '../store/store.js';

/**
 * One device's history as one timeline, newest first: what it reported (events), what rollouts
 * asked of it (deployments: when each began and the state it is in now), and what was recorded
 * about it or by it in the audit log (registration, accept/reject, placement). Each source is
 * read up to the limit before `until`, then merged, so a page is exact and the next one starts at
 * the oldest time shown.
 */
export interface HistoryEntry {
  /** ms since the epoch, in server time (events: when the server received them). */
  ts: number;
  source: 'event' | 'deployment' | 'audit';
  kind: string;
  /** One line for people. */
  summary: string;
  /** The event, deployment or audit entry id. */
  ref: string;
  detail: Record<string, unknown>;
}

export async function deviceHistory(
  store: Store,
  deviceId: string,
  until: number,
  limit: number,
): Promise<HistoryEntry[]> {
  const entries = [
    ...(await store.events.receivedBefore(deviceId, until, limit)).map(fromEvent),
    ...(
      await Promise.all((await store.deployments.forDevice(deviceId)).map((d) => fromDeployment(store, d)))
    ).flat(),
    ...(await store.audit.aboutDevice(deviceId, until, limit)).map(fromAudit),
  ].filter((e) => e.ts < until);
  // Stable order for equal times: audit after deployment after event, as they happen in one step.
  const rank = { event: 0, deployment: 1, audit: 2 } as const;
  entries.sort((a, b) => b.ts - a.ts || rank[b.source] - rank[a.source]);
  return entries.slice(0, limit);
}

function fromEvent(e: StoredEvent): HistoryEntry {
  const m = e.body;
  const parts = [
    m.version ? `version ${m.version}` : null,
    m.reason ? `${m.reason.code}: ${m.reason.message}` : null,
  ];
  return {
    ts: e.received,
    source: 'event',
    kind: e.kind,
    summary: [`reported ${e.kind}`, ...parts].filter(Boolean).join(', '),
    ref: e.eventId,
    detail: {
      deploymentId: e.deploymentId,
      deviceTs: new Date(e.ts).toISOString(),
      ...(m.version !== undefined ? { version: m.version } : {}),
      ...(m.reason !== undefined ? { reason: m.reason } : {}),
      ...(m.progress !== undefined ? { progress: m.progress } : {}),
      ...(m.detail !== undefined ? { detail: m.detail } : {}),
    },
  };
}

async function fromDeployment(store: Store, d: DeploymentRow): Promise<HistoryEntry[]> {
  const release = (await store.rollouts.get(d.rolloutId))?.releaseId ?? null;
  const detail = { rolloutId: d.rolloutId, release, phase: d.phase };
  const created: HistoryEntry = {
    ts: d.created,
    source: 'deployment',
    kind: 'deployment.created',
    summary: `rollout ${d.rolloutId} (release ${release ?? '?'}) took the device into phase ${d.phase}`,
    ref: d.id,
    detail,
  };
  if (d.updatedAt <= d.created) return [created];
  const now: HistoryEntry = {
    ts: d.updatedAt,
    source: 'deployment',
    kind: `deployment.${d.state}`,
    summary: `deployment ${d.id} is ${d.state}${d.failureReason ? ` (${d.failureReason})` : ''}`,
    ref: d.id,
    detail: {
      ...detail,
      state: d.state,
      attempts: d.attempts,
      failureReason: d.failureReason,
      fromVersion: d.fromVersion,
      rollback: d.rollback,
    },
  };
  return [now, created];
}

function fromAudit(a: AuditEntry): HistoryEntry {
  return {
    ts: a.ts,
    source: 'audit',
    kind: a.action,
    summary: `${a.action} by ${a.actor}`,
    ref: String(a.id),
    detail: { actor: a.actor, target: a.target, ...a.detail },
  };
}
