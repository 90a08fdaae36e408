// The storm bench's load processes (storm-worker.mjs), shared with `pnpm bench cluster`: starting
// one and talking to it, and registering its devices with a server.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A load process (storm-worker.mjs) and a request/answer channel to it over IPC. */
export function startWorker(setup) {
  const child = fork(fileURLToPath(new URL('./storm-worker.mjs', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: process.env.FLOTILLA_BENCH_LOAD_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FLOTILLA_BENCH_LOAD_PROF}`]
      : [],
  });
  let seq = 0;
  const waiting = new Map();
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`storm worker exited (${code}, ${signal})`)));
    child.on('message', (m) => {
      if ('ready' in m) return resolve(m.credentials);
      const w = waiting.get(m.re);
      waiting.delete(m.re);
      w?.(m);
    });
  });
  child.send(setup);
  return {
    ready,
    request: (msg) =>
      new Promise((resolve) => {
        if (!child.connected) return resolve({ ok: false });
        const id = ++seq;
        waiting.set(id, resolve);
        child.send({ ...msg, id });
      }),
    pid: child.pid,
    exited: () =>
      child.exitCode !== null || child.signalCode !== null ? null : new Promise((r) => child.once('exit', r)),
    kill: () => child.exitCode === null && child.kill('SIGKILL'),
  };
}

/** Registers the workers' devices (accepted) through the API, 1,000 per request. */
export async function bulkRegister(apiUrl, token, credentials) {
  for (let i = 0; i < credentials.length; i += 1000) {
    const res = await fetch(`${apiUrl}/api/v1/devices/bulk-register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        devices: credentials.slice(i, i + 1000).map((c) => ({ ...c, hardware: 'storm-board' })),
        status: 'accepted',
      }),
      signal: AbortSignal.timeout(120_000),
    });
    if (!res.ok) throw new Error(`bulk-register: ${res.status} ${(await res.text()).slice(0, 300)}`);
  }
}
