import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeBundle } from '@flotilla/image';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flipBits, makeImage, Rig, sha, signedRelease } from './helpers.js';

/** The compiled CLI (`node dist/bin/flotilla-agent.js`), as an installed device runs it. */
const BIN = fileURLToPath(new URL('../dist/bin/flotilla-agent.js', import.meta.url));
const run = promisify(execFile);

let rig: Rig;
afterEach(async () => rig?.cleanup());

beforeAll(async () => {
  await run('npx', ['tsc', '-b', 'packages/agent'], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
  });
}, 120_000);

async function setup() {
  rig = await Rig.create();
  const d = rig.dev.paths;
  const config = {
    deviceId: 'dev-1',
    hardware: 'sim-board-v1',
    dataDir: d.data,
    trustDir: d.trust,
    factoryReleaseFile: d.factoryRelease,
    slots: { A: { path: d.slotA }, B: { path: d.slotB } },
    bootloader: { kind: 'file', path: join(rig.dev.dir, 'bootloader.json') },
    reboot: { command: ['true'] },
    logLevel: 'silent',
  };
  const configPath = join(rig.dev.dir, 'agent.json');
  await writeFile(configPath, JSON.stringify(config));
  return configPath;
}

async function cli(args: string[]) {
  try {
    const r = await run(process.execPath, [BIN, ...args], { timeout: 60_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

async function bundle(image: Buffer, o: Parameters<typeof signedRelease>[2]) {
  const imagePath = join(rig.dev.dir, 'image.img');
  await writeFile(imagePath, image);
  const output = join(rig.dev.dir, `update-${o.version}.flot`);
  await writeBundle({
    manifest: signedRelease(rig.keys, image, o),
    imagePath,
    sbom: Buffer.from('sbom'),
    output,
  });
  return output;
}

describe('flotilla-agent CLI', () => {
  it('install FILE.flot verifies and installs from a file, arms the trial, and queues a local-install report', async () => {
    const config = await setup();
    const next = makeImage(21, rig.factory.length);
    const file = await bundle(next, { version: '1.1.0', securityVersion: 2 });
    const r = await cli(['install', file, '--config', config]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ state: 'Rebooting', halted: true });
    expect(sha(await rig.slotBytes('B', next.length))).toBe(sha(next));
    expect(sha(await rig.slotBytes('A', rig.factory.length))).toBe(sha(rig.factory));
    expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'B', good: 'A', trial: true });
    const queued = await readdir(join(rig.dev.paths.outbox));
    const kinds = await Promise.all(
      queued.map(async (n) => JSON.parse(await readFile(join(rig.dev.paths.outbox, n), 'utf8')).kind),
    );
    expect(kinds).toEqual(expect.arrayContaining(['local-install', 'installed', 'rebooting']));

    const s = await cli(['status', '--json', '--config', config]);
    expect(JSON.parse(s.out)).toMatchObject({
      bootedSlot: 'A',
      bootloader: { kind: 'file', primary: 'B', trial: true },
      agent: {
        state: 'Rebooting',
        committedSlot: 'A',
        deployment: { version: '1.1.0', origin: 'local', targetSlot: 'B' },
      },
    });
  });

  it('refuses a bundle for other hardware with its code, writes nothing, and reports it', async () => {
    const config = await setup();
    const file = await bundle(makeImage(22, rig.factory.length), {
      version: '1.1.0',
      compatible: ['other-board'],
    });
    const r = await cli(['install', file, '--config', config]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('FLOTILLA_ERR_INCOMPATIBLE_HARDWARE');
    expect((await rig.slotBytes('B', 4096)).equals(Buffer.alloc(4096))).toBe(true);
    const queued = await readdir(rig.dev.paths.outbox);
    const events = await Promise.all(
      queued.map(async (n) => JSON.parse(await readFile(join(rig.dev.paths.outbox, n), 'utf8'))),
    );
    expect(events.find((e) => e.kind === 'local-install')?.reason?.code).toBe(
      'FLOTILLA_ERR_INCOMPATIBLE_HARDWARE',
    );
  });

  it('refuses a tampered bundle image before it reaches the slot (FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH)', async () => {
    const config = await setup();
    const next = makeImage(23, rig.factory.length);
    const file = await bundle(next, { version: '1.1.0', securityVersion: 2 });
    const bytes = await readFile(file);
    flipBits(bytes, bytes.length - 100, 0xff); // inside the last image chunk
    await writeFile(file, bytes);
    const r = await cli(['install', file, '--config', config]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out).lastError.code).toBe('FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH');
    expect(sha(await rig.slotBytes('A', rig.factory.length))).toBe(sha(rig.factory));
    expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'A', trial: false });
  });

  it('refuses a bundle file that does not exist with a coded error and a non-zero exit (no ENOENT as internal)', async () => {
    const config = await setup();
    const r = await cli(['install', join(rig.dev.dir, 'no-such-update.flot'), '--config', config]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('FLOTILLA_ERR_AGENT_BUNDLE_UNREADABLE');
    expect(r.err).not.toContain('FLOTILLA_ERR_INTERNAL');
    expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'A', trial: false });
  });

  it('refuses a second install while the first waits for its reboot, and exits non-zero (FLOTILLA_ERR_AGENT_BUSY)', async () => {
    const config = await setup();
    const first = await bundle(makeImage(24, rig.factory.length), { version: '1.1.0', securityVersion: 2 });
    expect((await cli(['install', first, '--config', config])).code).toBe(0);
    const second = await bundle(makeImage(25, rig.factory.length), { version: '1.2.0', securityVersion: 2 });
    const r = await cli(['install', second, '--config', config]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('FLOTILLA_ERR_AGENT_BUSY');
    // The first update is still the one armed for the reboot.
    const s = await cli(['status', '--json', '--config', config]);
    expect(JSON.parse(s.out).agent.deployment.version).toBe('1.1.0');
  });

  it('prints usage and exits 2 without a command', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.out).toContain('flotilla-agent install FILE.flot');
  });

  it('refuses an unknown command and an install without a file with FLOTILLA_ERR_AGENT_USAGE, a hint and exit 2', async () => {
    const config = await setup();
    const unknown = await cli(['instal', '--config', config]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(
      /^error FLOTILLA_ERR_AGENT_USAGE: invalid arguments: unknown command 'instal'\n {2}hint: /m,
    );
    const noFile = await cli(['install', '--config', config]);
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/^error FLOTILLA_ERR_AGENT_USAGE: .*install needs a bundle file/m);
  });
});
