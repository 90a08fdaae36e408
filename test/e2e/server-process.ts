import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  httpServerHandle,
  newToken,
  type ServerHandle,
  type SimServerOptions,
} from '@flotilla/fleet-simulator';

const CHILD = fileURLToPath(new URL('./fixtures/sim-server-child.mjs', import.meta.url));
const DIST = fileURLToPath(new URL('../../simulators/fleet/dist/index.js', import.meta.url));

interface Ready {
  ok: true;
  apiUrl: string;
  dashboardUrl: string;
  mqtt: { host: string; port: number };
  port: number;
  mqttPort: number;
}

export interface ServerProcess extends ServerHandle {
  /** SIGKILL: the process dies wherever it is (mid-transaction, mid-publish). */
  kill(): Promise<void>;
  /** Starts it again on the same data directory and ports; devices reconnect by themselves. */
  restart(): Promise<void>;
}

/**
 * The simulator's server (`startSimServer`, keys imported, auto-accept) in a child process running
 * the compiled code, for tests that kill it for real. Every child is SIGKILLed when the handle
 * closes or this process exits.
 */
export async function spawnServerProcess(
  o: Pick<SimServerOptions, 'dataDir' | 'keysDir' | 'rolloutTickMs'>,
): Promise<ServerProcess> {
  if (!existsSync(DIST)) throw new Error('run `npx tsc -b` first: the killed server runs compiled code');
  const token = newToken();
  let child: ChildProcess | null = null;
  const reap = () => child?.kill('SIGKILL');
  process.once('exit', reap);
  const boot = async (ports: { port?: number; mqttPort?: number }): Promise<Ready> => {
    const c = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = c;
    c.send({ ...o, adminToken: token, logLevel: 'warn', ...ports });
    const msg = await new Promise<Ready | { ok: false; error: string }>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server child did not start within 60 s')), 60_000);
      c.once('message', (m) => {
        clearTimeout(t);
        resolve(m as Ready);
      });
      c.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`server child exited with ${code}`));
      });
    });
    if (!msg.ok) throw new Error(msg.error);
    return msg;
  };
  const kill = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  let ready = await boot({});
  const handle = httpServerHandle({
    apiUrl: ready.apiUrl,
    dashboardUrl: ready.dashboardUrl,
    mqtt: ready.mqtt,
    token,
    close: async () => {
      process.off('exit', reap);
      await kill();
    },
  });
  return {
    ...handle,
    kill,
    async restart() {
      ready = await boot({ port: ready.port, mqttPort: ready.mqttPort });
    },
  };
}
