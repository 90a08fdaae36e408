import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SqliteDriver } from '../../src/store/sqlite-driver.js';
import { describeStoreContract } from './contract.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-store-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeStoreContract('SQLite', async (database) => SqliteDriver.open(join(dir, `${database}.db`)));
