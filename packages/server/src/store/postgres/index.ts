/** What the server wires to run its store on PostgreSQL (several nodes, one database). */
export { openPostgresDriver, PostgresDriver, type PostgresDriverOptions } from './driver.js';
export { PostgresLease, type PostgresLeaseOptions } from './lease.js';
export { PG_MIGRATIONS } from './migrations.js';
