import { execFile, execFileSync } from 'node:child_process';
import { access, mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { canonicalize, generateTrustSet, validate } from '@flotilla/protocol';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigFile } from '../src/config.js';

/** `flotilla-agent init` and the first run's refusals, through the compiled CLI a device runs. */
const BIN = fileURLToPath(new URL('../dist/bin/flotilla-agent.js', import.meta.url));
const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  await run('npx', ['tsc', '-b', 'packages/agent'], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
  });
}, 120_000);
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function agent(args: string[]) {
  try {
    const r = await run(process.execPath, [BIN, ...args], { timeout: 60_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

async function device() {
  dir = await mkdtemp(join(tmpdir(), 'flotilla-init-'));
  const root = join(dir, 'root.json');
  await writeFile(root, canonicalize(generateTrustSet({ now: new Date() }).root));
  for (const slot of ['a.img', 'b.img']) {
    await writeFile(join(dir, slot), '');
    await truncate(join(dir, slot), 1 << 20);
  }
  const config = join(dir, 'etc', 'agent.json');
  const base = [
    'init',
    '--config',
    config,
    '--device-id',
    'dev-1',
    '--hardware',
    'board-v1',
    '--root',
    root,
    '--slot-a',
    join(dir, 'a.img'),
    '--slot-b',
    join(dir, 'b.img'),
    '--data-dir',
    join(dir, 'data'),
  ];
  return { config, base };
}

describe('flotilla-agent init', () => {
  it('writes a config the agent schema accepts, a device key at the default deviceKeyFile and a file bootloader env that run then uses', async () => {
    const { config, base } = await device();
    const r = await agent([...base, '--bootloader', 'file', '--json']);
    expect(r.err).toBe('');
    const out = JSON.parse(r.out);
    const written = validate(AgentConfigFile, JSON.parse(await readFile(config, 'utf8')), 'agent config');
    expect(written.server?.deviceKeyFile).toBeUndefined();
    expect(out.deviceKeyFile).toBe(join(dir, 'data', 'device-key.json'));
    expect(JSON.parse(await readFile(out.deviceKeyFile, 'utf8'))).toMatchObject({
      kind: 'flotilla-device-key',
    });
    expect(JSON.parse(await readFile(join(dir, 'data', 'bootenv.json'), 'utf8'))).toMatchObject({
      flotilla_slot: 'A',
      flotilla_good_slot: 'A',
      upgrade_available: 0,
    });
    const status = await agent(['status', '--json', '--config', config]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.out).bootloader).toMatchObject({ kind: 'file', primary: 'A', trial: false });
  });

  it('writes the reboot command given, else the one this init system has (busybox images have no systemctl)', async () => {
    const { config, base } = await device();
    expect(
      (await agent([...base, '--bootloader', 'file', '--reboot-command', '/bin/busybox reboot -f'])).code,
    ).toBe(0);
    expect(JSON.parse(await readFile(config, 'utf8')).reboot).toEqual({
      command: ['/bin/busybox', 'reboot', '-f'],
    });
    expect((await agent([...base, '--bootloader', 'file', '--force'])).code).toBe(0);
    const systemd = await access('/run/systemd/system').then(
      () => true,
      () => false,
    );
    expect(JSON.parse(await readFile(config, 'utf8')).reboot).toEqual({
      command: systemd ? ['systemctl', 'reboot'] : ['/sbin/reboot'],
    });
    const empty = await agent([...base, '--bootloader', 'file', '--force', '--reboot-command', ' ']);
    expect(empty.code).not.toBe(0);
    expect(empty.err + empty.out).toContain('FLOTILLA_ERR_AGENT_USAGE');
  });

  it('writes the GRUB env with grub-editenv and the U-Boot env with fw_setenv (only variables not set yet)', async () => {
    const { base } = await device();
    const grubenv = join(dir, 'boot', 'grubenv');
    const g = await agent([...base, '--bootloader', 'grub', '--bootloader-env', grubenv]);
    expect(g.code).toBe(0);
    expect(execFileSync('grub-editenv', [grubenv, 'list']).toString()).toContain('flotilla_slot=A');
    // U-Boot: an env on the "flash" already on slot B keeps it
    const envTxt = join(dir, 'env.txt');
    await writeFile(envTxt, 'flotilla_slot=B\nflotilla_good_slot=B\n');
    execFileSync('mkenvimage', ['-s', '0x4000', '-o', join(dir, 'uboot.env'), envTxt]);
    const fwConfig = join(dir, 'fw_env.config');
    await writeFile(fwConfig, `${join(dir, 'uboot.env')} 0x0000 0x4000\n`);
    const u = await agent([...base, '--force', '--bootloader', 'uboot', '--bootloader-env', fwConfig]);
    expect(u.code).toBe(0);
    const env = execFileSync('fw_printenv', ['-c', fwConfig]).toString();
    expect(env).toContain('flotilla_slot=B');
    expect(env).toContain('bootlimit=3');
  });

  it('refuses to overwrite a config, a missing slot and an unknown backend, each with a code and a fix', async () => {
    const { base } = await device();
    expect((await agent([...base, '--bootloader', 'file'])).code).toBe(0);
    const again = await agent([...base, '--bootloader', 'file']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^error FLOTILLA_ERR_AGENT_INIT_EXISTS: .*\n {2}hint: pass --force/);
    const noSlot = await agent([
      ...base.map((a) => a.replace('b.img', 'missing.img')),
      '--force',
      '--bootloader',
      'file',
    ]);
    expect(noSlot.err).toContain(
      'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND: a file the config names does not exist: slot B',
    );
    const badKind = await agent([...base, '--force', '--bootloader', 'lilo']);
    expect(badKind.code).toBe(2);
    expect(badKind.err).toContain('FLOTILLA_ERR_AGENT_USAGE');
  });
});

describe('flotilla-agent first run: missing files are named, not internal errors', () => {
  it('a missing bootloader env is FLOTILLA_ERR_AGENT_BOOTENV_NOT_FOUND with the fix', async () => {
    const { config, base } = await device();
    await agent([...base, '--bootloader', 'file']);
    await unlink(join(dir, 'data', 'bootenv.json'));
    const r = await agent(['status', '--config', config]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('FLOTILLA_ERR_AGENT_BOOTENV_NOT_FOUND');
    expect(r.err).toContain('hint: `flotilla-agent init --bootloader');
  });

  it('no device key at the default deviceKeyFile names that default (docs say it has one)', async () => {
    const { config, base } = await device();
    await agent([...base, '--bootloader', 'file', '--mqtt-url', 'mqtt://127.0.0.1:1']);
    await unlink(join(dir, 'data', 'device-key.json'));
    const ac = await agent(['run', '--config', config]);
    expect(ac.code).toBe(1);
    expect(ac.err).toContain(
      `FLOTILLA_ERR_AGENT_DEVICE_KEY_NOT_FOUND: device key not found: ${join(dir, 'data', 'device-key.json')} (the default of server.deviceKeyFile)`,
    );
  });

  it('a missing config file is FLOTILLA_ERR_AGENT_CONFIG_NOT_FOUND', async () => {
    dir = await mkdtemp(join(tmpdir(), 'flotilla-init-'));
    const r = await agent(['run', '--config', join(dir, 'agent.json')]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('FLOTILLA_ERR_AGENT_CONFIG_NOT_FOUND');
  });
});
