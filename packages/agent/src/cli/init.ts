import { access, copyFile, mkdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BOOT_VARS, GRUB_COMMITTED_VAR, toHex, validate } from '@flotilla/protocol';
import { FileBootloader } from '../bootloader/file-bootloader.js';
import { GrubEnv } from '../bootloader/grub.js';
import { UbootEnv } from '../bootloader/uboot.js';
import { AgentConfigFile } from '../config.js';
import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';
import { atomicWriteFile } from '../fs-util.js';
import { loadOrCreateDeviceKey } from '../transport/device-identity.js';
import { FileTrustStore } from '../trust/trust-store.js';

export const INIT_USAGE = `flotilla-agent init — set up a device: config, device key, trust root, bootloader env

  flotilla-agent init --device-id ID --hardware HW --root ROOT.json --slot-a PATH --slot-b PATH
                      --bootloader file|uboot|grub [options]

  --config FILE          config to write (default /etc/flotilla/agent.json or $FLOTILLA_AGENT_CONFIG)
  --data-dir DIR         agent data (default /var/lib/flotilla); the device key goes to DIR/device-key.json
  --trust-dir DIR        where root.json goes (default: trust/ beside the config)
  --root FILE            the server's root.json (GET /api/v1/root, or keys/root.json of the server)
  --bootloader-env PATH  file: the JSON env (default DATA/bootenv.json); grub: the grubenv
                         (default /boot/grub/grubenv); uboot: fw_env.config (default /etc/fw_env.config)
  --bootlimit N          boots of a new slot before the bootloader falls back (default 3)
  --mqtt-url URL         the server's broker (mqtt[s]://, ws[s]://); none = an offline device
  --provisioning-token-file FILE   one-time token for the first login
  --reboot-command "CMD ARGS"      how the agent reboots the device (default: systemctl reboot
                         when systemd runs, else /sbin/reboot as busybox init has it)
  --force                overwrite an existing config (the device key and set variables are kept)
  --json                 print what was written as JSON`;

const OPTIONS = {
  config: { type: 'string' },
  'device-id': { type: 'string' },
  hardware: { type: 'string' },
  'data-dir': { type: 'string' },
  'trust-dir': { type: 'string' },
  root: { type: 'string' },
  'slot-a': { type: 'string' },
  'slot-b': { type: 'string' },
  bootloader: { type: 'string' },
  'bootloader-env': { type: 'string' },
  bootlimit: { type: 'string' },
  'mqtt-url': { type: 'string' },
  'provisioning-token-file': { type: 'string' },
  'reboot-command': { type: 'string' },
  force: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

async function mustExist(path: string, what: string): Promise<void> {
  if (!(await exists(path))) throw new AgentError('FLOTILLA_ERR_AGENT_FILE_NOT_FOUND', `${what} ${path}`);
}

/** systemd's reboot where systemd is PID 1 (it has /run/systemd/system), else the init's own. */
async function defaultRebootCommand(): Promise<string[]> {
  return (await exists('/run/systemd/system')) ? ['systemctl', 'reboot'] : ['/sbin/reboot'];
}

/** `--reboot-command "CMD ARGS"`: split on spaces (no shell runs it); empty is refused. */
function rebootCommandOf(text: string): string[] {
  const argv = text.trim().split(/\s+/).filter(Boolean);
  if (argv.length === 0) throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', '--reboot-command is empty');
  return argv;
}

/** The variables a freshly flashed device starts with (slot A committed, no trial). */
function freshEnv(bootlimit: number): Record<string, string | number> {
  return { flotilla_slot: 'A', flotilla_good_slot: 'A', upgrade_available: 0, bootcount: 0, bootlimit };
}

/** Sets only what the environment does not have yet: a device already on slot B stays there. */
async function fillMissing(
  env: {
    readAll(): Promise<Record<string, string>>;
    setMany(v: Record<string, string | number>): Promise<void>;
  },
  wanted: Record<string, string | number>,
): Promise<string[]> {
  const current = await env.readAll();
  const missing = Object.fromEntries(Object.entries(wanted).filter(([k]) => !current[k]));
  if (Object.keys(missing).length) await env.setMany(missing);
  return Object.keys(missing);
}

/** `flotilla-agent init`: writes a config that passes the agent's schema, and what it needs. */
export async function runInit(argv: string[], defaultConfig: string): Promise<Record<string, unknown>> {
  let v: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    v = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', (err as Error).message);
  }
  for (const name of ['device-id', 'hardware', 'root', 'slot-a', 'slot-b', 'bootloader'] as const)
    if (!v[name]) throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', `init needs --${name}`);
  const kind = v.bootloader!;
  if (kind !== 'file' && kind !== 'uboot' && kind !== 'grub')
    throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', `--bootloader ${kind}: one of file, uboot, grub`);
  const bootlimit = Number(v.bootlimit ?? '3');
  if (!/^[1-9]$/.test(v.bootlimit ?? '3'))
    throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', `--bootlimit ${v.bootlimit}: 1..9`);

  const configPath = resolve(v.config ?? defaultConfig);
  if (!v.force && (await exists(configPath)))
    throw new AgentError('FLOTILLA_ERR_AGENT_INIT_EXISTS', configPath);
  const dataDir = resolve(v['data-dir'] ?? '/var/lib/flotilla');
  const trustDir = resolve(v['trust-dir'] ?? join(dirname(configPath), 'trust'));
  const slotA = resolve(v['slot-a']!);
  const slotB = resolve(v['slot-b']!);
  const rootFile = resolve(v.root!);
  await mustExist(rootFile, 'trust root');
  await mustExist(slotA, 'slot A');
  await mustExist(slotB, 'slot B');
  const token = v['provisioning-token-file'] ? resolve(v['provisioning-token-file']) : undefined;
  if (token) await mustExist(token, 'provisioning token file');

  const envPath = resolve(
    v['bootloader-env'] ??
      (kind === 'file'
        ? join(dataDir, 'bootenv.json')
        : kind === 'grub'
          ? '/boot/grub/grubenv'
          : '/etc/fw_env.config'),
  );
  const bootloader =
    kind === 'file'
      ? { kind, path: envPath }
      : kind === 'grub'
        ? { kind, envFile: envPath, bootlimit }
        : { kind, fwEnvConfig: envPath };
  // Checked before anything is written: a refused init leaves the device as it was.
  const config = validate(
    AgentConfigFile,
    {
      deviceId: v['device-id'],
      hardware: v.hardware,
      dataDir,
      trustDir,
      ...(v['mqtt-url']
        ? { server: { mqttUrl: v['mqtt-url'], ...(token ? { provisioningTokenFile: token } : {}) } }
        : {}),
      slots: { A: { path: slotA }, B: { path: slotB } },
      bootloader,
      reboot: {
        command:
          v['reboot-command'] !== undefined
            ? rebootCommandOf(v['reboot-command'])
            : await defaultRebootCommand(),
      },
    },
    'agent config',
  );
  if (kind === 'uboot')
    await stat(envPath).catch((cause) => {
      throw new AgentError('FLOTILLA_ERR_AGENT_BOOTENV_NOT_FOUND', `fw_env.config ${envPath}`, { cause });
    });

  await mkdir(trustDir, { recursive: true });
  await copyFile(rootFile, join(trustDir, 'root.json'));
  const root = await new FileTrustStore(trustDir).load(new Date());
  await mkdir(dataDir, { recursive: true });
  const keyFile = join(dataDir, 'device-key.json');
  const key = await loadOrCreateDeviceKey(keyFile, config.deviceId);

  let envSet: string[];
  if (kind === 'file') {
    envSet = (await exists(envPath)) ? [] : Object.keys(freshEnv(bootlimit));
    if (envSet.length) {
      await mkdir(dirname(envPath), { recursive: true });
      await FileBootloader.create(envPath, 'A', bootlimit);
    }
  } else if (kind === 'grub') {
    if (!(await exists(envPath))) {
      await mkdir(dirname(envPath), { recursive: true });
      const r = await execBounded(['grub-editenv', envPath, 'create'], { timeoutMs: 10_000 });
      if (r.code !== 0)
        throw new AgentError('FLOTILLA_ERR_AGENT_BOOTLOADER', `grub-editenv create: ${r.output}`);
    }
    // GRUB counts down `boot_left` only while a trial is armed; no bootcount.
    const { bootcount: _none, ...grubVars } = freshEnv(bootlimit);
    const grubEnv = new GrubEnv({ envFile: envPath });
    envSet = await fillMissing(grubEnv, grubVars);
    // grub.cfg boots this slot when grubenv is torn: the slot grubenv calls good
    if (!(await exists(grubEnv.committedFile))) {
      const good = (await grubEnv.readAll())[BOOT_VARS.good];
      await grubEnv.writeCommitted(good === 'B' ? 'B' : 'A');
      envSet.push(GRUB_COMMITTED_VAR);
    }
  } else envSet = await fillMissing(new UbootEnv({ configFile: envPath }), freshEnv(bootlimit));

  await mkdir(dirname(configPath), { recursive: true });
  await atomicWriteFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
  return {
    ok: true,
    config: configPath,
    deviceId: config.deviceId,
    publicKey: toHex(key.publicKey),
    deviceKeyFile: keyFile,
    trustRoot: { file: join(trustDir, 'root.json'), version: root.version },
    bootloader: { kind, env: envPath, set: envSet },
  };
}
