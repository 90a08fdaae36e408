import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';

const MOSQUITTO = '/usr/sbin/mosquitto';
/** Debian's mosquitto package ships the plugin here (amd64 and arm64 multiarch paths). */
const DYNSEC_PLUGINS = [
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
];

export function dynsecPlugin(): string | null {
  return DYNSEC_PLUGINS.find((p) => existsSync(p)) ?? null;
}

/** Mosquitto and its dynamic-security plugin are installed (CI installs the mosquitto package). */
export const hasMosquittoDynsec = existsSync(MOSQUITTO) && dynsecPlugin() !== null;

export interface Mosquitto {
  url: string;
  host: string;
  port: number;
  /** The server's broker user: made by `mosquitto_ctrl dynsec init`, the dynsec admin. */
  user: string;
  password: string;
  stop(): Promise<void>;
}

/** A loopback-only Mosquitto config with `auth` lines (password file + ACL, or the dynsec plugin); returns its path. */
export function writeMosquittoConf(dir: string, port: number, auth: string[]): string {
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      ...auth,
      // The same bound as the embedded broker's frame guard: 64 KiB payload + room for the topic.
      `max_packet_size ${64 * 1024 + 1024}`,
      'persistence false',
      'log_dest none',
      '',
    ].join('\n'),
  );
  return conf;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/**
 * Mosquitto 2 on loopback with the dynamic-security plugin, set up as docs/cluster.md says: one
 * admin user made by `mosquitto_ctrl dynsec init` (TEST-ONLY password) that the server logs in
 * as; the server then manages its own role and every device's client over $CONTROL.
 */
export async function startMosquitto(): Promise<Mosquitto> {
  const plugin = dynsecPlugin();
  if (!existsSync(MOSQUITTO) || !plugin)
    throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-mosquitto-'));
  const user = 'flotilla-server';
  const password = 'TEST-ONLY-broker-password';
  const dynsecFile = join(dir, 'dynamic-security.json');
  execFileSync('mosquitto_ctrl', ['dynsec', 'init', dynsecFile, user, password], { stdio: 'ignore' });
  const port = await freePort();
  const conf = writeMosquittoConf(dir, port, [
    `plugin ${plugin}`,
    `plugin_opt_config_file ${dynsecFile}`,
    // The server's session must be able to hold every report while the store is full.
    'max_queued_messages 100000',
  ]);
  const proc: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `mqtt://127.0.0.1:${port}`;
  const stop = async () => {
    proc.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  // Up once the admin can log in (bounded: 100 tries, 10 s).
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = mqtt.connect(url, {
        clientId: `probe-${i}`,
        username: user,
        password,
        reconnectPeriod: 0,
        connectTimeout: 2000,
      });
      c.once('connect', () => {
        c.end(true);
        resolve(true);
      });
      c.once('error', () => {
        c.end(true);
        resolve(false);
      });
    });
    if (ok) break;
    if (i >= 100 || proc.exitCode !== null) {
      await stop();
      throw new Error('mosquitto did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, host: '127.0.0.1', port, user, password, stop };
}
