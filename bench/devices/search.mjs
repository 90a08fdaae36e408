// Device search at fleet scale: a real server (HTTP on loopback) with N devices in its store
// (default 100,000), each search asked R times. Prints, per search, the server's own time
// (its Server-Timing header: the store's count + page queries) and the HTTP round trip, as medians.
// Usage: node bench/devices/search.mjs [--devices 100000] [--runs 20]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServer } from '@flotilla/server';

const { values } = parseArgs({
  options: { devices: { type: 'string', default: '100000' }, runs: { type: 'string', default: '20' } },
});
const N = Math.min(Math.max(Number(values.devices), 100), 2_000_000);
const RUNS = Math.min(Math.max(Number(values.runs), 1), 200);
const id = (i) => `dev-${String(i).padStart(7, '0')}`;

const dataDir = mkdtempSync(join(tmpdir(), 'flotilla-bench-search-'));
const token = 'TEST-ONLY-bench-admin-token';
const server = await startServer({
  dataDir,
  port: 0,
  mqttPort: 0,
  logLevel: 'silent',
  adminToken: token,
  devKeys: true,
  limits: { retentionIntervalMs: 0 },
});
try {
  const { store } = server.ctx;
  let t = performance.now();
  const setVersion = store.db.prepare('UPDATE devices SET version = ?, online = ? WHERE id = ?');
  for (let start = 0; start < N; start += 10_000)
    store.tx(() => {
      for (let i = start; i < Math.min(N, start + 10_000); i++) {
        store.devices.insert({
          id: id(i),
          publicKey: i.toString(16).padStart(64, '0'),
          status: i % 1000 === 1 ? 'pending' : 'accepted',
          hardware: `board-${i % 4}`,
          tags: [`site-${i % 200}`, `row-${i % 7}`],
          group: `g${i % 100}`,
          now: Date.now(),
        });
        setVersion.run(`1.${i % 5}.0`, i % 3 === 0 ? 0 : 1, id(i));
      }
    });
  console.log(`${N} devices stored in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  store.db.exec('ANALYZE');

  const deep = id(Math.floor(N * 0.9));
  const searches = [
    ['first page, no filter', ''],
    ['one id (exact prefix)', `q=${id(73_421 % N)}`],
    ['id prefix (10 ids)', `q=${id(73_421 % N).slice(0, -1)}`],
    ['tag (0.5 %)', 'tag=site-42'],
    ['group (1 %)', 'group=g7'],
    ['version (20 %)', 'version=1.3.0'],
    ['hardware (25 %)', 'hardware=board-2'],
    ['status pending (0.1 %)', 'status=pending'],
    ['online (67 %)', 'online=true'],
    ['tag + group + version + hardware', 'tag=site-42&group=g42&version=1.2.0&hardware=board-2'],
    ['cursor page at 90 %', `after=${deep}`],
    ['offset page at 90 %', `offset=${Math.floor(N * 0.9)}`],
  ];
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = [];
  for (const [name, query] of searches) {
    const server_ = [];
    const wall = [];
    let total = 0;
    for (let r = 0; r < RUNS; r++) {
      t = performance.now();
      const res = await fetch(`${server.addresses.api}/api/v1/devices?limit=50&${query}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = await res.json();
      wall.push(performance.now() - t);
      if (res.status !== 200) throw new Error(`${name}: ${res.status} ${JSON.stringify(body)}`);
      total = body.total;
      server_.push(Number(/dur=([0-9.]+)/.exec(res.headers.get('server-timing') ?? '')?.[1] ?? Number.NaN));
    }
    rows.push({
      search: name,
      total,
      'server ms (median)': median(server_).toFixed(2),
      'round trip ms (median)': median(wall).toFixed(2),
    });
  }
  console.table(rows);

  // The dashboard's rollout preview reads the accepted fleet once, as the engine does at the start.
  const image = Buffer.alloc(256 * 1024, 7);
  const built = await fetch(
    `${server.addresses.api}/api/v1/releases/build?name=bench-os&version=2.0.0&securityVersion=1&compatible=board-2&format=raw&partitionSize=${image.length}&input=image`,
    {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: image,
    },
  );
  if (built.status !== 201) throw new Error(`release build: ${built.status} ${await built.text()}`);
  const previews = [];
  let taken = 0;
  for (let r = 0; r < Math.min(RUNS, 5); r++) {
    t = performance.now();
    const res = await fetch(`${server.addresses.api}/api/v1/rollouts/preview`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        release: '2.0.0',
        policy: { phases: [{ count: 10 }, { percent: 10 }, { percent: 100 }] },
      }),
    });
    const body = await res.json();
    previews.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`preview: ${res.status} ${JSON.stringify(body)}`);
    taken = body.devices;
  }
  console.log(
    `rollout preview over ${N} devices (${taken} targeted): ${median(previews).toFixed(0)} ms round trip (median)`,
  );
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
