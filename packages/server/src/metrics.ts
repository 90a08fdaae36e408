import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type FleetReader, registerFleetGauges } from './metrics/fleet-gauges.js';

/** Seconds from offer to healthy (docs/observability.md): 30 s … 4 h. */
export const OFFER_TO_HEALTHY_BUCKETS = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
export const ARTIFACT_KINDS = ['full', 'delta', 'sbom', 'bundle'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];
export const SIGNING_ROLES = ['release', 'delta', 'offer'] as const;
export type SigningRole = (typeof SIGNING_ROLES)[number];
/** Distinct `reason` labels of flotilla_rollbacks_total; later new codes count as `other`. */
export const MAX_ROLLBACK_REASONS = 100;

/**
 * Prometheus metrics of one server instance (own registry: several servers can live in one process).
 * `fleet` reads the store at scrape time for the fleet gauges (none are exported without it).
 */
export function createMetrics(fleet?: FleetReader) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'flotilla_' });
  const m = {
    registry,
    reportsStored: new Counter({
      name: 'flotilla_reports_stored_total',
      help: 'device reports written to the store',
      registers: [registry],
    }),
    reportsDuplicate: new Counter({
      name: 'flotilla_reports_duplicate_total',
      help: 'device events already recorded (resends)',
      registers: [registry],
    }),
    reportsDropped: new Counter({
      name: 'flotilla_reports_dropped_total',
      help: 'device messages dropped, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    reportsRefused: new Counter({
      name: 'flotilla_reports_refused_total',
      help: 'reports refused because the ingest queue was full (devices resend)',
      registers: [registry],
    }),
    ingestQueue: new Gauge({
      name: 'flotilla_ingest_queue',
      help: 'reports waiting for the next flush',
      registers: [registry],
    }),
    ingestFlushSeconds: new Histogram({
      name: 'flotilla_ingest_flush_seconds',
      help: 'time to write one batch of reports',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
    mqttAuth: new Counter({
      name: 'flotilla_mqtt_auth_total',
      help: 'MQTT connection attempts by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    mqttDenied: new Counter({
      name: 'flotilla_mqtt_denied_total',
      help: 'MQTT publishes and subscriptions denied by the ACL',
      labelNames: ['kind'],
      registers: [registry],
    }),
    devicesConnected: new Gauge({
      name: 'flotilla_devices_connected',
      help: 'devices connected to the embedded broker',
      registers: [registry],
    }),
    offersSent: new Counter({
      name: 'flotilla_offers_sent_total',
      help: 'offers published',
      registers: [registry],
    }),
    deltasBuilt: new Counter({
      name: 'flotilla_deltas_built_total',
      help: 'deltas built by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'flotilla_http_requests_total',
      help: 'API requests by status class',
      labelNames: ['status'],
      registers: [registry],
    }),
    // The SLIs of docs/observability.md.
    updates: new Counter({
      name: 'flotilla_updates_total',
      help: 'deployments that reached a terminal state, by release and result (only healthy is success)',
      labelNames: ['release', 'result'],
      registers: [registry],
    }),
    offerToHealthy: new Histogram({
      name: 'flotilla_offer_to_healthy_seconds',
      help: 'time from the offer that succeeded to the device reporting healthy',
      buckets: OFFER_TO_HEALTHY_BUCKETS,
      registers: [registry],
    }),
    rollbacks: new Counter({
      name: 'flotilla_rollbacks_total',
      help: 'rolled-back events stored, by the error code the device reported',
      labelNames: ['reason'],
      registers: [registry],
    }),
    rolloutPauses: new Counter({
      name: 'flotilla_rollout_pauses_total',
      help: 'rollouts paused, by reason (error-threshold or operator)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    artifactBytes: new Counter({
      name: 'flotilla_artifact_bytes_served_total',
      help: 'artifact bytes written to responses, by kind',
      labelNames: ['kind'],
      registers: [registry],
    }),
    artifactRedirects: new Counter({
      name: 'flotilla_artifact_redirects_total',
      help: 'artifact downloads authorised and handed to nginx (X-Accel-Redirect), by kind',
      labelNames: ['kind'],
      registers: [registry],
    }),
    imageBuilds: new Counter({
      name: 'flotilla_image_builds_total',
      help: 'server-side image builds by result',
      labelNames: ['result'],
      registers: [registry],
    }),
    signing: new Counter({
      name: 'flotilla_signing_total',
      help: 'signatures made with the online keys, by role and result',
      labelNames: ['role', 'result'],
      registers: [registry],
    }),
  };
  // Bounded label sets start at 0, so rate() and increase() see the first event of a series.
  for (const kind of ARTIFACT_KINDS) {
    m.artifactBytes.inc({ kind }, 0);
    m.artifactRedirects.inc({ kind }, 0);
  }
  for (const result of ['ok', 'failed']) {
    m.imageBuilds.inc({ result }, 0);
    for (const role of SIGNING_ROLES) m.signing.inc({ role, result }, 0);
  }
  for (const reason of ['error-threshold', 'operator']) m.rolloutPauses.inc({ reason }, 0);
  if (fleet) registerFleetGauges(registry, fleet);
  // Devices choose the rollback code: keep the label set bounded whatever they send.
  const reasons = new Set<string>();
  const countRollback = (code: string | undefined) => {
    let reason = code === undefined ? 'unknown' : /^[A-Za-z0-9_.:-]{1,64}$/.test(code) ? code : 'invalid';
    if (!reasons.has(reason) && reasons.size >= MAX_ROLLBACK_REASONS) reason = 'other';
    else reasons.add(reason);
    m.rollbacks.inc({ reason });
  };
  return { ...m, countRollback };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Runs one signing operation and counts it (a thrown error is a failed signature, and is re-thrown). */
export function countSigning<T>(metrics: Metrics | undefined, role: SigningRole, sign: () => T): T {
  try {
    const out = sign();
    metrics?.signing.inc({ role, result: 'ok' });
    return out;
  } catch (err) {
    metrics?.signing.inc({ role, result: 'failed' });
    throw err;
  }
}
