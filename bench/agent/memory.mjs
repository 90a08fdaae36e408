// Agent memory: idle RSS of one agent process, and peak RSS while it installs a 256 MiB image
// (full over HTTP, and delta: spool + streaming apply), next to a bare `node -e` baseline.
// Usage: node bench/agent/memory.mjs [sizeMiB]   (needs `npx tsc -b` first)
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimDevice } from '@flotilla/agent';
import { createDelta } from '@flotilla/delta';
import { buildRoot, generateKeyPair, isoAfter, sha256Hex, signDocument } from '@flotilla/protocol';

const MiB = 1024 * 1024;
const SIZE = Number(process.argv[2] ?? 256) * MiB;
const CHUNK = MiB;
const here = fileURLToPath(new URL('.', import.meta.url));

/** Runs `node args`, samples VmRSS/VmHWM from /proc every 20 ms; returns the figures in MiB. */
function measure(args, { settleMs = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let rss = 0;
    let hwm = 0;
    const t0 = Date.now();
    const timer = setInterval(async () => {
      const s = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
      if (kb('VmRSS') && Date.now() - t0 >= settleMs) rss = kb('VmRSS');
      hwm = Math.max(hwm, kb('VmHWM'));
    }, 20);
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      if (code !== 0) return reject(new Error(`child exited ${code}: ${out}`));
      resolve({ rssMiB: +(rss / 1024).toFixed(1), peakMiB: +(hwm / 1024).toFixed(1), out: out.trim() });
    });
  });
}

function chunkHashes(buf) {
  const h = [];
  for (let i = 0; i < buf.length; i += CHUNK) h.push(sha256Hex(buf.subarray(i, i + CHUNK)));
  return h;
}

const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-agent-'));
try {
  // TEST-ONLY keys generated per run.
  const root = [generateKeyPair()];
  const release = generateKeyPair();
  const delta = generateKeyPair();
  const meta = buildRoot({
    version: 1,
    expires: isoAfter(new Date(), 30),
    roles: {
      root: { keys: root, threshold: 1 },
      release: { keys: [release], threshold: 1 },
      delta: { keys: [delta], threshold: 1 },
      recovery: { keys: [release], threshold: 1 },
    },
  });
  const rootEnv = signDocument(meta, root);
  const base = randomBytes(SIZE);
  const target = Buffer.from(base);
  for (let i = 0; i < 64; i++) randomBytes(64 * 1024).copy(target, Math.floor((i * SIZE) / 64));
  await writeFile(join(dir, 'base.img'), base);
  await writeFile(join(dir, 'target.img'), target);
  const manifest = (img, version, sv) =>
    signDocument(
      {
        _type: 'release',
        schemaVersion: 1,
        kind: 'release',
        name: 'bench-os',
        version,
        securityVersion: sv,
        compatible: ['sim-board-v1'],
        image: {
          format: 'raw',
          sha256: sha256Hex(img),
          size: img.length,
          chunkSize: CHUNK,
          chunkHashes: chunkHashes(img),
        },
        sbom: { format: 'CycloneDX-1.5', sha256: sha256Hex('sbom'), size: 4 },
        provenance: {
          sourceRevision: 'bench',
          builder: 'bench',
          buildTime: '2026-01-01T00:00:00Z',
          inputs: [],
        },
        created: '2026-01-01T00:00:00Z',
        expires: isoAfter(new Date(), 7),
      },
      [release],
    );
  const baseRelease = manifest(base, '1.0.0', 1);
  const targetRelease = manifest(target, '1.1.0', 2);
  const t0 = Date.now();
  await createDelta({
    basePath: join(dir, 'base.img'),
    targetPath: join(dir, 'target.img'),
    outPath: join(dir, 'd.fdelta'),
  });
  const deltaMs = Date.now() - t0;
  const deltaSize = (await stat(join(dir, 'd.fdelta'))).size;
  const deltaSha = createHash('sha256')
    .update(await readFile(join(dir, 'd.fdelta')))
    .digest('hex');

  const files = { '/target': join(dir, 'target.img'), '/delta': join(dir, 'd.fdelta') };
  const server = http.createServer(async (req, res) => {
    const path = files[req.url];
    const { size } = await stat(path);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, {
      'content-length': size - start,
      ...(m ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}),
    });
    createReadStream(path, { start }).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;

  const offer = (withDelta) =>
    signDocument(
      {
        _type: 'offer',
        schemaVersion: 1,
        deploymentId: `bench-${withDelta ? 'delta' : 'full'}`,
        deviceId: 'bench-1',
        issued: isoAfter(new Date(Date.now() - 60_000), 0),
        expires: isoAfter(new Date(), 1),
        release: targetRelease,
        full: { url: `${url}/target`, size: SIZE, sha256: sha256Hex(target) },
        ...(withDelta
          ? {
              delta: {
                url: `${url}/delta`,
                descriptor: signDocument(
                  {
                    _type: 'delta',
                    schemaVersion: 1,
                    codec: 'flotilla-bsdiff-brotli',
                    fromImageSha256: sha256Hex(base),
                    toImageSha256: sha256Hex(target),
                    deltaSha256: deltaSha,
                    deltaSize,
                    fromVersion: '1.0.0',
                    toVersion: '1.1.0',
                    expires: isoAfter(new Date(), 1),
                  },
                  [delta],
                ),
              },
            }
          : {}),
      },
      [delta],
    );

  const device = async (name) => {
    const d = join(dir, name);
    await SimDevice.create({
      dir: d,
      deviceId: 'bench-1',
      hardware: 'sim-board-v1',
      slotSize: SIZE,
      factoryImage: base,
      factoryRelease: baseRelease,
      root: rootEnv,
    });
    return d;
  };
  const job = async (name, body) => {
    const p = join(dir, `${name}.json`);
    await writeFile(p, JSON.stringify(body));
    return p;
  };

  const baseline = await measure(['-e', 'setTimeout(() => {}, 3000)'], { settleMs: 2500 });
  const idle = await measure(
    [join(here, 'child-install.mjs'), await job('idle', { dir: await device('idle'), idleMs: 3000 })],
    { settleMs: 2500 },
  );
  const full = await measure([
    join(here, 'child-install.mjs'),
    await job('full', { dir: await device('full'), offer: offer(false) }),
  ]);
  const del = await measure([
    join(here, 'child-install.mjs'),
    await job('delta', { dir: await device('delta'), offer: offer(true) }),
  ]);
  server.close();

  const r = (o) => JSON.parse(o.out.split('\n').at(-1));
  console.log(
    `agent memory (image ${SIZE / MiB} MiB, chunk ${CHUNK / MiB} MiB, delta ${(deltaSize / MiB).toFixed(1)} MiB made in ${deltaMs} ms)`,
  );
  console.log(`  bare node -e baseline      RSS ${baseline.rssMiB} MiB`);
  console.log(
    `  agent idle                 RSS ${idle.rssMiB} MiB   (+${(idle.rssMiB - baseline.rssMiB).toFixed(1)} MiB over node)`,
  );
  console.log(
    `  full install over HTTP     peak ${full.peakMiB} MiB   ${r(full).ms} ms   -> ${r(full).state}${r(full).lastError ? ` ${r(full).lastError.code}` : ''}`,
  );
  console.log(
    `  delta install (spool+apply) peak ${del.peakMiB} MiB   ${r(del).ms} ms   -> ${r(del).state}${r(del).lastError ? ` ${r(del).lastError.code}` : ''}`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
