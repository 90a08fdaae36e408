import { afterAll, beforeAll } from 'vitest';
import { openPostgresDriver } from '../../src/store/postgres/index.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { describeStoreContract } from './contract.js';

if (!postgresBin) console.warn(POSTGRES_MISSING);

let pg: TestPostgres | undefined;
const urls = new Map<string, string>();
beforeAll(async () => {
  if (postgresBin) pg = await startTestPostgres('flotilla_contract');
}, 120_000);
afterAll(async () => {
  await pg?.destroy();
});

describeStoreContract(
  'PostgreSQL',
  async (database) => {
    let url = urls.get(database);
    if (!url) {
      url = await pg!.createDatabase(database);
      urls.set(database, url);
    }
    return openPostgresDriver(url);
  },
  { skip: !postgresBin },
);
