import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '@flotilla/image';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BehaviourReader } from '../src/behaviour.js';

let dir: string;
let good: string;
let bad: string;

async function image(name: string, behaviour: unknown): Promise<string> {
  const root = join(dir, `${name}-root`);
  await mkdir(join(root, 'etc/flotilla'), { recursive: true });
  await writeFile(join(root, 'etc/flotilla/release'), `${name}\n`);
  await writeFile(join(root, 'etc/flotilla/sim-behaviour.json'), JSON.stringify(behaviour));
  const out = join(dir, `${name}.img`);
  await buildImage({ input: root, output: out, format: 'ext4', partitionSize: 1024 * 1024, label: name });
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-behaviour-'));
  good = await image('1.1.0', { boots: true, healthy: true, healthReason: null });
  bad = await image('1.2.0-bad', {
    boots: true,
    healthy: false,
    healthReason: 'app.service failed: exit code 3',
  });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('boot behaviour read from the booted slot image', () => {
  it('reads health and release from the image itself', async () => {
    const r = new BehaviourReader('ext4');
    const g = await r.read(good);
    expect(g.behaviour).toEqual({ boots: true, healthy: true, healthReason: null });
    expect(g.release).toBe('1.1.0');
    const b = await r.read(bad);
    expect(b.behaviour.healthy).toBe(false);
    expect(b.behaviour.healthReason).toBe('app.service failed: exit code 3');
  });

  it('treats an empty or garbage slot as one that does not boot', async () => {
    const r = new BehaviourReader('ext4');
    expect((await r.read(null)).behaviour.boots).toBe(false);
    const junk = join(dir, 'junk.img');
    await writeFile(junk, Buffer.alloc(4096, 0xab));
    await truncate(junk, 1024 * 1024);
    const v = await r.read(junk);
    expect(v.behaviour.boots).toBe(false);
    expect(v.unreadable).toMatch(/sim-behaviour/);
  });
});
