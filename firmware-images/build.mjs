#!/usr/bin/env node
// Builds the demo firmware set (1.0.0, 1.1.0, 1.2.0-bad, recovery) from recipes/ into out/.
//
//   npx tsc -b && node firmware-images/build.mjs --keys DIR [--out DIR] [--only ID,ID] [--json]
//   node firmware-images/build.mjs --generate-test-keys [--out DIR]   (TEST-ONLY keys into OUT/test-keys)
//
// Keys come from a directory made by `flotilla keys init` (one key file per key, by role).
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitWithError, usageError } from './print-error.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const image = await import(join(here, '../packages/image/dist/index.js'));
const protocol = await import(join(here, '../packages/protocol/dist/index.js'));

const json = process.argv.includes('--json');
let values;
try {
  ({ values } = parseArgs({
    options: {
      keys: { type: 'string' },
      out: { type: 'string', default: join(here, 'out') },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
      'generate-test-keys': { type: 'boolean', default: false },
    },
  }));
  if (!values.keys && !values['generate-test-keys'])
    throw usageError(
      'FLOTILLA_ERR_IMAGE_KEY_MISSING',
      'pass --keys DIR (from `flotilla keys init`) or --generate-test-keys',
    );
} catch (err) {
  exitWithError(err, { json });
}
const outDir = resolve(values.out);
await mkdir(outDir, { recursive: true });

let keysDir = values.keys && resolve(values.keys);
if (values['generate-test-keys']) {
  keysDir = join(outDir, 'test-keys');
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const now = new Date();
  const keys = Object.fromEntries(
    ['root', 'release', 'delta', 'recovery'].map((r) => [r, protocol.generateKeyPair()]),
  );
  for (const [role, key] of Object.entries(keys)) {
    const file = join(keysDir, `${role}.key`);
    await writeFile(file, protocol.encodeKeyFile(key, role, `TEST-ONLY ${role} key`), { mode: 0o600 });
    await chmod(file, 0o600);
  }
  const root = protocol.buildRoot({
    version: 1,
    expires: protocol.isoAfter(now, 365),
    roles: Object.fromEntries(Object.entries(keys).map(([r, k]) => [r, { keys: [k], threshold: 1 }])),
  });
  await writeFile(
    join(keysDir, 'root.json'),
    `${JSON.stringify(protocol.signDocument(root, [keys.root]), null, 2)}\n`,
  );
}
try {
  const set = await image.buildFirmwareSet({
    keysDir,
    outDir,
    only: values.only ? values.only.split(',') : undefined,
    onProgress: values.json ? undefined : (id, phase) => process.stderr.write(`  ${id}: ${phase}\n`),
  });
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ ok: true, outDir, releases: set.releases.map(({ manifest, ...r }) => r) })}\n`,
    );
  } else {
    for (const r of set.releases)
      process.stdout.write(
        `${r.id.padEnd(10)} ${r.kind.padEnd(8)} ${r.version.padEnd(16)} ${r.format} ${r.imageSize} B  sha256 ${r.imageSha256.slice(0, 16)}…  ${r.bundlePath}\n`,
      );
  }
} catch (err) {
  exitWithError(err, { json });
}
