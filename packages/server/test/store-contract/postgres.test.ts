import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresDriver } from '../../src/store/postgres/index.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { describeStoreContract } from './contract.js';

if (!postgresBin) console.warn(POSTGRES_MISSING);

let pgsrv: TestPostgres | undefined;
let admin: pg.Client | undefined;
const urls = new Map<string, string>();
/** Each case's database is a copy of one migrated once (no process or migration per case: CI has 2 cores). */
const TEMPLATE = 'contract_template';
const urlOf = (database: string) => pgsrv!.url.replace(/\/[^/]+$/, `/${database}`);
beforeAll(async () => {
  if (!postgresBin) return;
  pgsrv = await startTestPostgres('flotilla_contract');
  await (await openPostgresDriver(await pgsrv.createDatabase(TEMPLATE))).close();
  admin = new pg.Client({ connectionString: pgsrv.url });
  await admin.connect();
}, 120_000);
afterAll(async () => {
  await admin?.end();
  await pgsrv?.destroy();
});

describeStoreContract(
  'PostgreSQL',
  async (database) => {
    let url = urls.get(database);
    if (!url) {
      await admin!.query(`CREATE DATABASE ${database} TEMPLATE ${TEMPLATE}`);
      url = urlOf(database);
      urls.set(database, url);
    }
    return openPostgresDriver(url);
  },
  { skip: !postgresBin },
);

// What only PostgreSQL can get wrong: SQLite always compares text byte by byte.
describe.skipIf(!postgresBin)('store database on PostgreSQL', () => {
  it('refuses a database that sorts text by a language collation, before creating anything in it', async () => {
    await admin!.query(
      `CREATE DATABASE contract_icu TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'`,
    );
    const url = urlOf('contract_icu');
    await expect(openPostgresDriver(url)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_STORE_COLLATION',
      message: expect.stringContaining('contract_icu'),
      hint: expect.stringContaining("LOCALE 'C'"),
    });
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const tables = await db.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
      expect(tables.rows[0].n).toBe(0);
    } finally {
      await db.end();
    }
  });
});
