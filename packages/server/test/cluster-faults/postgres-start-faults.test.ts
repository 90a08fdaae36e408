import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, startFlotilla } from '../../../cli/test/run-cli.js';
import { PostgresDriver } from '../../src/store/postgres/driver.js';
import { PG_MIGRATIONS } from '../../src/store/postgres/migrations.js';
import { POSTGRES_MISSING, postgresBin, startTestPostgres, type TestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers.js';

// Faults a node meets at start on a shared PostgreSQL, through the real CLI as a child process:
// the database unreachable, and a database whose schema another version of the server made.

if (!postgresBin) console.warn(POSTGRES_MISSING);
const LATEST = PG_MIGRATIONS.at(-1)!.version;
/** Generous: the CLI must give up by itself (5 s connect timeout) long before it is killed. */
const KILL_AFTER_MS = 90_000;

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-faults-'));
  dirs.push(d);
  return d;
};

/** `flotilla server --json` on a data dir and a database; resolves once it runs, or with its exit. */
async function node(dataDir: string, database: string, id: string) {
  const cli = startFlotilla(
    [
      'server',
      '--json',
      '--data-dir',
      dataDir,
      '--database',
      database,
      '--node-id',
      id,
      '--port',
      '0',
      '--mqtt-port',
      '0',
      '--log-level',
      'warn',
    ],
    {},
    KILL_AFTER_MS,
  );
  let exited: CliRun | null = null;
  void cli.done.then((r) => {
    exited = r;
  });
  await waitFor(() => exited !== null || cli.output.stdout.includes('"ok":true'), KILL_AFTER_MS, `${id} up`);
  const stop = async () => {
    if (exited === null) cli.child.kill('SIGTERM');
    const run = await cli.done;
    expect(run.code, `${id} stopped cleanly: ${run.stderr.slice(-2000)}`).toBe(0);
    return run;
  };
  if (exited !== null) {
    const run = exited as CliRun;
    return {
      up: false as const,
      run,
      stop,
      why: `${id} exited ${run.code}: ${run.stdout}${run.stderr.slice(-2000)}`,
    };
  }
  const summary = JSON.parse(cli.output.stdout.trim().split('\n').at(-1)!) as { api: string };
  return { up: true as const, api: summary.api, stop, why: `${id} is up` };
}

/** The coded error of a refused start (`--json`: the last stdout line). */
function refusal(run: CliRun): { code: string; message: string; hint: string } {
  expect(run.code, run.stderr).toBe(1);
  return run.json().error;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('PostgreSQL unreachable at start', () => {
  it('connection refused: exits 1 with FLOTILLA_ERR_STORE_UNAVAILABLE and a hint, writing no keys or token', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'server');
    // Nothing listens on port 1 of loopback.
    const r = await node(dataDir, 'postgres://flotilla@127.0.0.1:1/flotilla', 'node-a');
    expect(r.up).toBe(false);
    const err = refusal((r as { run: CliRun }).run);
    expect(err.code).toBe('FLOTILLA_ERR_STORE_UNAVAILABLE');
    expect(err.message).toContain('127.0.0.1:1');
    expect(err.hint).toMatch(/PostgreSQL running/);
    // The store is opened first: no keys, admin token or offline root keys were made.
    expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
    expect(existsSync(`${dataDir}.offline-keys`)).toBe(false);
  });

  it('a server that accepts and never answers: gives up by itself with FLOTILLA_ERR_STORE_UNAVAILABLE', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createTcpServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as { port: number };
    try {
      const dataDir = join(tempDir(), 'server');
      const r = await node(dataDir, `postgres://flotilla@127.0.0.1:${port}/flotilla`, 'node-a');
      expect(r.up).toBe(false);
      const run = (r as { run: CliRun }).run;
      expect(run.code, 'exited by itself, not killed').toBe(1);
      expect(refusal(run).code).toBe('FLOTILLA_ERR_STORE_UNAVAILABLE');
      expect(sockets.length).toBeGreaterThan(0);
      expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  }, 120_000);
});

describe('schema migrations on a shared database', () => {
  it('are expand-only, so a node one version behind keeps working while another migrates', () => {
    // Dropping or renaming a table or column, changing a type or tightening a column would break
    // the nodes not yet upgraded during a rolling upgrade (docs/cluster.md, Faults).
    const destructive =
      /\bDROP\s+(TABLE|COLUMN)\b|\bRENAME\b|\bALTER\s+COLUMN\b[^;]*\b(TYPE|SET\s+NOT\s+NULL)\b/i;
    for (const m of PG_MIGRATIONS) expect(m.sql, `migration ${m.version} ${m.name}`).not.toMatch(destructive);
  });
});

describe.skipIf(!postgresBin)('a node and its database at start (a real PostgreSQL)', () => {
  let pgsrv: TestPostgres;

  beforeAll(async () => {
    pgsrv = await startTestPostgres();
  }, 120_000);
  afterAll(async () => {
    await pgsrv?.destroy();
  });

  const versions = async (url: string) => {
    const db = new PostgresDriver(url, { max: 1 });
    try {
      return (await db.all<{ version: number }>('SELECT version FROM schema_version ORDER BY version')).map(
        (r) => r.version,
      );
    } finally {
      await db.close();
    }
  };

  /** Two nodes started together on `url` both come up, and the database holds every migration once. */
  const twoNodesAtOnce = async (url: string) => {
    const [a, b] = await Promise.all([
      node(join(tempDir(), 'a'), url, 'node-a'),
      node(join(tempDir(), 'b'), url, 'node-b'),
    ]);
    try {
      expect([a.up, b.up], `${a.why}; ${b.why}`).toEqual([true, true]);
      expect(await versions(url)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  };

  it('PostgreSQL down at the first start, then up: the same data dir starts cleanly', async () => {
    const dataDir = join(tempDir(), 'server');
    await pgsrv.stop();
    try {
      const r = await node(dataDir, pgsrv.url, 'node-a');
      expect(r.up).toBe(false);
      expect(refusal((r as { run: CliRun }).run).code).toBe('FLOTILLA_ERR_STORE_UNAVAILABLE');
    } finally {
      await pgsrv.start();
    }
    const r = await node(dataDir, pgsrv.url, 'node-a');
    expect(r.up, r.why).toBe(true);
    expect(existsSync(join(dataDir, 'admin-token'))).toBe(true);
    await r.stop();
  }, 180_000);

  it('two nodes starting at once on an empty database both come up; each migration applied once', async () => {
    const url = await pgsrv.createDatabase('empty_two_nodes');
    await twoNodesAtOnce(url);
  }, 180_000);

  it('a database an older server made: two nodes at once migrate it to this version, once', async () => {
    const url = await pgsrv.createDatabase('older');
    // The schema of the first migrations only, as an older server left it.
    const db = new PostgresDriver(url, { max: 1 });
    await db.run(
      'CREATE TABLE schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)',
    );
    for (const m of PG_MIGRATIONS.slice(0, 3)) {
      await db.tx(async (tx) => {
        await tx.run(m.sql);
        await tx.run('INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)', [
          m.version,
          m.name,
          1,
        ]);
      });
    }
    await db.close();
    await twoNodesAtOnce(url);
  }, 180_000);

  it('a database a newer server migrated: refused with FLOTILLA_ERR_STORE_SCHEMA_NEWER naming both versions', async () => {
    const url = await pgsrv.createDatabase('newer');
    const first = await node(join(tempDir(), 'a'), url, 'node-a');
    expect(first.up, first.why).toBe(true);
    await first.stop();
    const db = new PostgresDriver(url, { max: 1 });
    await db.run('INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)', [
      LATEST + 1,
      'newer',
      1,
    ]);
    await db.close();
    const dataDir = join(tempDir(), 'b');
    const r = await node(dataDir, url, 'node-b');
    expect(r.up).toBe(false);
    const err = refusal((r as { run: CliRun }).run);
    expect(err.code).toBe('FLOTILLA_ERR_STORE_SCHEMA_NEWER');
    expect(err.message).toContain(`schema ${LATEST + 1} is newer than this server (${LATEST})`);
    expect(err.hint).toMatch(/upgrade this node/);
    expect(await versions(url)).toContain(LATEST + 1);
  }, 180_000);

  it('a running node when another migrates the database further: keeps serving; refused at its next start', async () => {
    const url = await pgsrv.createDatabase('migrated_under');
    const dataDir = join(tempDir(), 'a');
    const a = await node(dataDir, url, 'node-a');
    expect(a.up, a.why).toBe(true);
    const { api } = a as { api: string };
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const get = (path: string) => fetch(`${api}${path}`, { headers: { authorization: `Bearer ${token}` } });
    // What a newer server's expand-only migration does: a new table, a new column with a default.
    const db = new PostgresDriver(url, { max: 1 });
    await db.tx(async (tx) => {
      await tx.run('CREATE TABLE future_things (id BIGINT PRIMARY KEY)');
      await tx.run(`ALTER TABLE devices ADD COLUMN future_note TEXT NOT NULL DEFAULT ''`);
      await tx.run('INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)', [
        LATEST + 1,
        'future',
        1,
      ]);
    });
    await db.close();
    try {
      expect((await get('/healthz')).status).toBe(200);
      const created = await fetch(`${api}/api/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'after the migration', role: 'viewer' }),
      });
      expect(created.status, await created.clone().text()).toBe(201);
      expect((await get('/api/v1/devices')).status).toBe(200);
    } finally {
      await a.stop();
    }
    const again = await node(dataDir, url, 'node-a');
    expect(again.up).toBe(false);
    expect(refusal((again as { run: CliRun }).run).code).toBe('FLOTILLA_ERR_STORE_SCHEMA_NEWER');
  }, 180_000);
});
