import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one server instance (own registry: several servers can live in one process). */
export function createMetrics() {
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
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;
