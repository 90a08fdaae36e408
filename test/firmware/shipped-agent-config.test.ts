import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../packages/agent/src/config.js';

// Every agent config the repository ships — files in images and examples, the config the QEMU boot
// images bake in, and the JSON examples in the docs — goes through the agent's own loader, so an
// image can never again carry a config its agent refuses at start.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(tmpdir(), 'flotilla-shipped-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Files of the checkout (tracked, and new ones not ignored) whose name says agent config. */
function shippedConfigFiles(): string[] {
  const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((p) => /^agent(\.[\w-]+)?\.json(\.example)?$/.test(basename(p)) && !p.includes('node_modules/'));
  return files.map((p) => join(ROOT, p));
}

/** ```json blocks of the docs that are agent configs (they name deviceId and slots). */
function docExamples(): { where: string; json: string }[] {
  const docs = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '*.md'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((p) => p && !p.includes('node_modules/'));
  const out: { where: string; json: string }[] = [];
  for (const doc of docs) {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    for (const m of text.matchAll(/```json\n([\s\S]*?)```/g))
      if (/"deviceId"/.test(m[1]!) && /"slots"/.test(m[1]!)) out.push({ where: doc, json: m[1]! });
  }
  return out;
}

describe('shipped agent configs', () => {
  it('every agent.json / agent.json.example in the repository passes loadConfigFile', async () => {
    const files = shippedConfigFiles();
    // the demo rootfs ships its example; a config file that pretends to be a device's is not shipped
    expect(files.map((f) => f.slice(ROOT.length + 1))).toContain(
      'firmware-images/recipes/common/rootfs/etc/flotilla/agent.json.example',
    );
    for (const file of files) {
      const config = await loadConfigFile(file);
      expect(config.deviceId, file).toMatch(/^[A-Za-z0-9._-]+$/);
    }
  });

  it('the demo rootfs config matches the image: its hardware, its U-Boot env file and its data partition', async () => {
    const rootfs = join(ROOT, 'firmware-images/recipes/common/rootfs');
    const config = await loadConfigFile(join(rootfs, 'etc/flotilla/agent.json.example'));
    const recipe = JSON.parse(readFileSync(join(ROOT, 'firmware-images/recipes/1.0.0/recipe.json'), 'utf8'));
    expect(recipe.compatible).toContain(config.hardware);
    expect(config.bootloader).toMatchObject({ kind: 'uboot', fwEnvConfig: '/etc/fw_env.config' });
    readFileSync(join(rootfs, 'etc/fw_env.config'));
    // the per-device config lives on /data (kept across slot updates); /etc/flotilla/agent.json links to it
    expect(recipe.links['/etc/flotilla/agent.json']).toBe('../../data/flotilla/agent.json');
    for (const path of [config.dataDir, config.trustDir]) expect(path.startsWith('/data/')).toBe(true);
  });

  it('the config baked into each QEMU boot image passes loadConfigFile', async () => {
    const build = await import('../../firmware-images/boot/build.mjs');
    for (const arch of ['x86_64', 'aarch64']) {
      const file = join(work, `boot-${arch}.json`);
      writeFileSync(file, JSON.stringify(build.agentConfig(arch)));
      const config = await loadConfigFile(file);
      expect(config.hardware).toBe(build.qemuHardware(arch));
    }
  });

  it('every agent config example in the docs passes loadConfigFile', async () => {
    const examples = docExamples();
    expect(examples.map((e) => e.where)).toContain('docs/agent.md');
    for (const [i, e] of examples.entries()) {
      const file = join(work, `doc-${i}.json`);
      writeFileSync(file, e.json);
      await expect(loadConfigFile(file), e.where).resolves.toBeDefined();
    }
  });
});
