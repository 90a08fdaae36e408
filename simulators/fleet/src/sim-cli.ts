import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { attachFleet } from './attach.js';
import { SimError } from './errors.js';

export const SIM_USAGE = `flotilla-sim — simulated devices (the real agent on file-backed A/B slots) for a running server

Usage:
  flotilla-sim --server URL [--token TOKEN] [--devices N] [options]

  --server URL      the server's API, e.g. http://127.0.0.1:8080 (default $FLOTILLA_SERVER; required)
  --token TOKEN     operator API token (default $FLOTILLA_TOKEN): registers the devices
  --devices N       simulated devices (default 10, up to 20000)
  --release VER     release the devices run at first (default: the newest on the server);
                    its image must carry /etc/flotilla/sim-behaviour.json (firmware-images recipes)
  --mqtt URL        broker, mqtt://host:port (default: the one the server announces)
  --prefix P        device ids P-0001… (default sim-<random>, so runs do not collide)
  --tag T           tag every device (repeatable)
  --dir DIR         keep slots and agent data here (default: a temp dir, removed at exit)
  --history FILE    append one JSON line {"deviceId","eventId","kind"} per report the broker
                    acknowledged (the devices' own record, to compare with the server's)
  --json            print one JSON line once the devices are up
  -h, --help        this help

Runs until SIGINT/SIGTERM; then the devices shut down like a clean power-off.
`;

const OPTIONS = {
  server: { type: 'string' },
  token: { type: 'string' },
  devices: { type: 'string' },
  release: { type: 'string' },
  mqtt: { type: 'string' },
  prefix: { type: 'string' },
  tag: { type: 'string', multiple: true },
  dir: { type: 'string' },
  history: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function fail(err: unknown, out: NodeJS.WritableStream): number {
  const e = err as Error & { code?: string; hint?: string };
  // The same shape as `flotilla`'s errors.
  out.write(`error ${e.code ?? 'FLOTILLA_ERR_INTERNAL'}: ${e.message}\n`);
  if (e.hint) out.write(`  hint: ${e.hint}\n`);
  return 1;
}

/** Returns the exit code: 0 after a clean stop, 1 on failure, 2 on a usage error. */
export async function main(argv: string[], signal: AbortSignal): Promise<number> {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    values = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    fail(new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', (err as Error).message), process.stderr);
    process.stderr.write(SIM_USAGE);
    return 2;
  }
  if (values.help) {
    process.stdout.write(SIM_USAGE);
    return 0;
  }
  // --server and --token mean what they mean to `flotilla`, environment included.
  const server = values.server ?? process.env.FLOTILLA_SERVER;
  const token = values.token ?? process.env.FLOTILLA_TOKEN;
  const devices = Number(values.devices ?? '10');
  const usage = !server
    ? '--server URL (or $FLOTILLA_SERVER) is required'
    : !token
      ? '--token (or $FLOTILLA_TOKEN) is required'
      : !/^\d+$/.test(values.devices ?? '10') || devices < 1 || devices > 20_000
        ? `--devices ${values.devices} (1-20000)`
        : null;
  if (usage) {
    fail(new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', usage), process.stderr);
    return 2;
  }
  const dir = values.dir ? resolve(values.dir) : await mkdtemp(join(tmpdir(), 'flotilla-sim-'));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  try {
    const attached = await attachFleet({
      server: server!,
      token: token!,
      devices,
      dir,
      ...(values.release ? { release: values.release } : {}),
      ...(values.mqtt ? { mqtt: values.mqtt } : {}),
      ...(values.prefix ? { prefix: values.prefix } : {}),
      ...(values.tag ? { tags: values.tag } : {}),
      ...(values.history ? { history: resolve(values.history) } : {}),
      log,
    });
    const summary = {
      ok: true,
      devices: attached.deviceIds.length,
      first: attached.deviceIds[0],
      last: attached.deviceIds.at(-1),
      release: attached.release,
      hardware: attached.hardware,
      mqtt: attached.mqtt,
      dir,
    };
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else
      process.stdout.write(
        `${summary.devices} simulated devices (${summary.first} … ${summary.last}) on ${summary.release}, ` +
          `hardware ${summary.hardware}, broker ${summary.mqtt}\nCtrl-C to stop\n`,
      );
    await new Promise<void>((done) => {
      if (signal.aborted) return done();
      signal.addEventListener('abort', () => done(), { once: true });
    });
    await attached.close();
    return 0;
  } catch (err) {
    return fail(err, process.stderr);
  } finally {
    if (!values.dir) await rm(dir, { recursive: true, force: true });
  }
}
