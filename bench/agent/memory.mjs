// Agent memory: idle RSS of one agent process, and peak RSS while it installs an image of each
// size (full over HTTP, and delta: spool + streaming apply), next to a bare `node -e` baseline.
// Install memory must not grow with the image: one chunk is held, never the image. Per install:
// the peak RSS, the peak within the first quarter of the run (an early plateau means no growth
// with bytes processed), and heap + external memory retained after a forced GC at the end.
//
// Usage: node bench/agent/memory.mjs [sizeMiB ...] [--with-1g]    (needs `npx tsc -b` first)
//   default sizes 64 256; --with-1g (or FLOTILLA_BENCH_1G=1) adds 1024 (a few minutes: the delta
//   is made in memory by the server-side codec). Images are sparse files (about 5/8 data blocks,
//   the rest holes, like a filesystem image with free space) written and hashed in streaming
//   fashion, so this process never holds an image either.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SimDevice } from '@flotilla/agent/testing';
import { createDelta } from '@flotilla/delta';
import { buildRoot, generateKeyPair, isoAfter, sha256Hex, signDocument } from '@flotilla/protocol';
import { benchArgs, usageError } from '../args.mjs';

const MiB = 1024 * 1024;
const CHUNK = MiB;
const here = fileURLToPath(new URL('.', import.meta.url));
const USAGE = 'usage: node bench/agent/memory.mjs [sizeMiB ...] [--with-1g]';
const { values: opts, positionals } = benchArgs(USAGE, {
  options: { 'with-1g': { type: 'boolean', default: false } },
  allowPositionals: true,
});
const badSize = positionals.find((a) => !/^[1-9]\d*$/.test(a));
if (badSize !== undefined) usageError(USAGE, `'${badSize}' is not an image size in MiB`);
const sizes = positionals.map(Number);
if (sizes.length === 0) sizes.push(64, 256);
if ((opts['with-1g'] || process.env.FLOTILLA_BENCH_1G === '1') && !sizes.includes(1024)) sizes.push(1024);

/** Runs `node args`, samples VmRSS/VmHWM from /proc every 20 ms; returns the figures in MiB. */
function measure(argv, { settleMs = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let rss = 0;
    let hwm = 0;
    const samples = []; // [ms since start, VmRSS kB]: does the peak come early or keep growing?
    const t0 = Date.now();
    const timer = setInterval(async () => {
      const s = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
      if (kb('VmRSS') && Date.now() - t0 >= settleMs) rss = kb('VmRSS');
      if (kb('VmRSS')) samples.push([Date.now() - t0, kb('VmRSS')]);
      hwm = Math.max(hwm, kb('VmHWM'));
    }, 20);
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      if (code !== 0) return reject(new Error(`child exited ${code}: ${out}`));
      const end = Date.now() - t0;
      const early = Math.max(0, ...samples.filter(([t]) => t <= end / 4).map(([, v]) => v));
      resolve({
        rssMiB: +(rss / 1024).toFixed(1),
        peakMiB: +(hwm / 1024).toFixed(1),
        earlyPeakMiB: +(early / 1024).toFixed(1),
        out: out.trim(),
      });
    });
  });
}

/** 1 MiB block `i` of the base holds data (else a hole): deterministic, about 5 in 8. */
const isData = (i) => Math.imul(i, 2654435761) >>> 29 < 5;

/** Writes a sparse image of `size` bytes block by block; `changed(i)` adds the target's edits. */
async function writeImage(path, size, seed, edit) {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    const blocks = size / MiB;
    for (let i = 0; i < blocks; i++) {
      let block = isData(i) ? seeded(seed, i) : null;
      if (edit) block = edit(i, block);
      if (block) await fh.write(block, 0, block.length, i * MiB);
    }
  } finally {
    await fh.close();
  }
}

/** Pseudo-random 1 MiB block from (seed, i): same bytes every time, no image kept in memory. */
function seeded(seed, i) {
  const out = Buffer.allocUnsafe(MiB);
  let h = createHash('sha256').update(`${seed}:${i}`).digest();
  for (let at = 0; at < MiB; at += 32) {
    h.copy(out, at);
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

/** Whole-image sha256 and per-chunk hashes, streamed from the file. */
async function hashImage(path) {
  const whole = createHash('sha256');
  const chunks = [];
  let h = createHash('sha256');
  let fill = 0;
  for await (const piece of createReadStream(path, { highWaterMark: MiB })) {
    whole.update(piece);
    let at = 0;
    while (at < piece.length) {
      const n = Math.min(CHUNK - fill, piece.length - at);
      h.update(piece.subarray(at, at + n));
      fill += n;
      at += n;
      if (fill === CHUNK) {
        chunks.push(h.digest('hex'));
        h = createHash('sha256');
        fill = 0;
      }
    }
  }
  if (fill > 0) chunks.push(h.digest('hex'));
  return { sha256: whole.digest('hex'), chunkHashes: chunks };
}

const fileSha = async (path) => {
  const h = createHash('sha256');
  for await (const piece of createReadStream(path, { highWaterMark: MiB })) h.update(piece);
  return h.digest('hex');
};

const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-agent-'));
try {
  // TEST-ONLY keys generated per run.
  const root = [generateKeyPair()];
  const release = generateKeyPair();
  const deltaKey = generateKeyPair();
  const meta = buildRoot({
    version: 1,
    expires: isoAfter(new Date(), 30),
    roles: {
      root: { keys: root, threshold: 1 },
      release: { keys: [release], threshold: 1 },
      delta: { keys: [deltaKey], threshold: 1 },
      recovery: { keys: [release], threshold: 1 },
    },
  });
  const rootEnv = signDocument(meta, root);
  const manifest = (img, size, version, sv) =>
    signDocument(
      {
        _type: 'release',
        schemaVersion: 1,
        kind: 'release',
        name: 'bench-os',
        version,
        securityVersion: sv,
        compatible: ['sim-board-v1'],
        image: { format: 'raw', sha256: img.sha256, size, chunkSize: CHUNK, chunkHashes: img.chunkHashes },
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

  let files = {};
  const server = http.createServer(async (req, res) => {
    const path = files[req.url];
    if (!path) {
      res.writeHead(404).end();
      return;
    }
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

  const job = async (name, body) => {
    const p = join(dir, `${name}.json`);
    await writeFile(p, JSON.stringify(body));
    return p;
  };
  const device = async (name, size, basePath, baseRelease) => {
    const d = join(dir, name);
    await SimDevice.create({
      dir: d,
      deviceId: 'bench-1',
      hardware: 'sim-board-v1',
      slotSize: size,
      factoryImage: new Uint8Array(0),
      factoryRelease: baseRelease,
      root: rootEnv,
    });
    // The factory image goes into slot A as a sparse copy (no image in this process's memory).
    await promisify(execFile)('cp', ['--sparse=always', basePath, join(d, 'slot-A.img')]);
    return d;
  };

  // Idle figures after a full GC (both sides): garbage from start-up is not what idle costs.
  const baseline = await measure(['--expose-gc', '-e', 'gc(); setTimeout(() => {}, 3000)'], {
    settleMs: 2500,
  });
  const rows = [];
  let idle = null;
  for (const sizeMiB of sizes) {
    const size = sizeMiB * MiB;
    const sd = join(dir, String(sizeMiB));
    await mkdir(sd);
    const basePath = join(sd, 'base.img');
    const targetPath = join(sd, 'target.img');
    const deltaPath = join(sd, 'd.fdelta');
    await writeImage(basePath, size, 'base');
    // The next release: 64 scattered blocks rewritten, plus data where the base had holes.
    const blocks = size / MiB;
    const edited = new Set(Array.from({ length: 64 }, (_, k) => Math.floor((k * blocks) / 64)));
    await writeImage(targetPath, size, 'base', (i, block) => {
      if (!edited.has(i)) return block;
      const out = block ? Buffer.from(block) : Buffer.alloc(MiB);
      randomBytes(64 * 1024).copy(out, (i * 7919) % (MiB - 64 * 1024));
      return out;
    });
    const base = await hashImage(basePath);
    const target = await hashImage(targetPath);
    const baseRelease = manifest(base, size, '1.0.0', 1);
    const targetRelease = manifest(target, size, '1.1.0', 2);
    const t0 = Date.now();
    await createDelta({ basePath, targetPath, outPath: deltaPath });
    const deltaMs = Date.now() - t0;
    const deltaSize = (await stat(deltaPath)).size;
    const deltaSha = await fileSha(deltaPath);
    files = { '/target': targetPath, '/delta': deltaPath };

    const offer = (withDelta) =>
      signDocument(
        {
          _type: 'offer',
          schemaVersion: 1,
          deploymentId: `bench-${withDelta ? 'delta' : 'full'}-${sizeMiB}`,
          deviceId: 'bench-1',
          issued: isoAfter(new Date(Date.now() - 60_000), 0),
          expires: isoAfter(new Date(), 1),
          release: targetRelease,
          full: { url: `${url}/target`, size, sha256: target.sha256 },
          ...(withDelta
            ? {
                delta: {
                  url: `${url}/delta`,
                  descriptor: signDocument(
                    {
                      _type: 'delta',
                      schemaVersion: 1,
                      codec: 'flotilla-bsdiff-brotli',
                      fromImageSha256: base.sha256,
                      toImageSha256: target.sha256,
                      deltaSha256: deltaSha,
                      deltaSize,
                      fromVersion: '1.0.0',
                      toVersion: '1.1.0',
                      expires: isoAfter(new Date(), 1),
                    },
                    [deltaKey],
                  ),
                },
              }
            : {}),
        },
        [deltaKey],
      );

    if (!idle)
      idle = await measure(
        [
          '--expose-gc',
          join(here, 'child-install.mjs'),
          await job('idle', {
            dir: await device(`${sizeMiB}/idle`, size, basePath, baseRelease),
            idleMs: 3000,
          }),
        ],
        { settleMs: 2500 },
      );
    const full = await measure([
      '--expose-gc',
      join(here, 'child-install.mjs'),
      await job('full', {
        dir: await device(`${sizeMiB}/full`, size, basePath, baseRelease),
        offer: offer(false),
      }),
    ]);
    await rm(join(sd, 'full'), { recursive: true, force: true });
    const del = await measure([
      '--expose-gc',
      join(here, 'child-install.mjs'),
      await job('delta', {
        dir: await device(`${sizeMiB}/delta`, size, basePath, baseRelease),
        offer: offer(true),
      }),
    ]);
    const r = (o) => JSON.parse(o.out.split('\n').at(-1));
    const outcome = (o) => `${r(o).state}${r(o).lastError ? ` ${r(o).lastError.code}` : ''}`;
    rows.push({ sizeMiB, full, fullR: r(full), del, delR: r(del), deltaSize, deltaMs, outcome });
    await rm(sd, { recursive: true, force: true });
  }
  server.close();

  const pad = (v, n) => String(v).padStart(n);
  console.log(
    `agent memory (chunk ${CHUNK / MiB} MiB; RSS in MiB; bare node -e baseline ${baseline.rssMiB} MiB)`,
  );
  console.log(`agent idle RSS ${idle.rssMiB} MiB (+${(idle.rssMiB - baseline.rssMiB).toFixed(1)} over node)`);
  console.log('');
  console.log(
    ' image MiB | full: peak RSS (first 1/4) retained  time ms  end       | delta MiB  made ms | delta: peak RSS (first 1/4) retained  time ms  end',
  );
  for (const x of rows)
    console.log(
      `${pad(x.sizeMiB, 10)} | ${pad(x.full.peakMiB, 15)} ${pad(`(${x.full.earlyPeakMiB})`, 9)} ${pad(x.fullR.retainedMiB, 8)} ${pad(x.fullR.ms, 8)}  ${x.outcome(x.full).padEnd(9)} | ${pad((x.deltaSize / MiB).toFixed(1), 9)} ${pad(x.deltaMs, 8)} | ${pad(x.del.peakMiB, 16)} ${pad(`(${x.del.earlyPeakMiB})`, 9)} ${pad(x.delR.retainedMiB, 8)} ${pad(x.delR.ms, 8)}  ${x.outcome(x.del)}`,
    );
} finally {
  await rm(dir, { recursive: true, force: true });
}
