// Local processes for the cluster test and the tests that run real PostgreSQL, Redis and nginx:
// every child in its own process group, killed with its group when this process ends (normally,
// on an error, or on SIGINT/SIGTERM), and every temp dir removed unless asked to keep it.
// Plain JavaScript so that `cluster-test` runs with node alone (no vitest, no TypeScript loader).
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** @type {Set<import('node:child_process').ChildProcess>} */
const groups = new Set();
/** @type {Set<string>} */
const dirs = new Set();
/** @type {Set<() => void>} */
const exitHooks = new Set();
let keepDirs = false;

/** Keep temp dirs at exit (`--keep`, for debugging); children are stopped all the same. */
export function keepTempDirs(keep = true) {
  keepDirs = keep;
}

/** A fresh temp dir, removed at exit (unless kept) or by the returned `remove`. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Removes a temp dir now (unless kept). */
export function removeTempDir(dir) {
  dirs.delete(dir);
  if (!keepDirs) rmSync(dir, { recursive: true, force: true });
}

/** A synchronous step for process exit (e.g. stop a daemon that is not our child); returns its removal. */
export function onExit(fn) {
  exitHooks.add(fn);
  return () => exitHooks.delete(fn);
}

function killGroupNow(child, signal) {
  try {
    process.kill(-(/** @type {number} */ (child.pid)), signal);
  } catch {
    // already gone
  }
}

process.once('exit', () => {
  for (const child of groups) killGroupNow(child, 'SIGKILL');
  for (const fn of exitHooks) {
    try {
      fn();
    } catch {
      // best effort at exit
    }
  }
  if (!keepDirs) for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * SIGINT/SIGTERM end this process through its 'exit' handlers (children killed, dirs removed)
 * after `before` (bounded to 15 s). For commands; tests leave signals to their runner.
 */
export function exitOnSignals(before = async () => undefined) {
  for (const [signal, code] of /** @type {const} */ ([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ]))
    process.once(signal, () => {
      const timer = setTimeout(() => process.exit(code), 15_000);
      timer.unref();
      void before().finally(() => process.exit(code));
    });
}

/**
 * @typedef {object} Child
 * @property {string} name
 * @property {import('node:child_process').ChildProcess} proc
 * @property {string | null} logFile   stdout+stderr (or stderr alone with `stdout: 'pipe'`)
 * @property {() => boolean} running
 * @property {() => string} logTail    the last 4 KiB of the log, for error messages
 * @property {(signal?: NodeJS.Signals) => Promise<void>} kill   the whole group; resolves on exit (bounded)
 * @property {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} exited
 */

/**
 * Spawns `command` in its own process group; output goes to `logFile` (inside a temp dir of the
 * caller). `stdout: 'pipe'` keeps stdout readable (e.g. a `--json` line), stderr still to the log.
 * @param {string} name
 * @param {string} command
 * @param {string[]} args
 * @param {{ logFile?: string, stdout?: 'pipe', env?: NodeJS.ProcessEnv, cwd?: string }} [o]
 * @returns {Child}
 */
export function spawnGroup(name, command, args, o = {}) {
  const fd = o.logFile ? openSync(o.logFile, 'a') : 'ignore';
  const proc = spawn(command, args, {
    detached: true,
    stdio: ['ignore', o.stdout === 'pipe' ? 'pipe' : fd, fd],
    ...(o.env ? { env: o.env } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
  });
  if (typeof fd === 'number') closeSync(fd);
  groups.add(proc);
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      groups.delete(proc);
      resolve({ code, signal });
    });
    proc.once('error', () => {
      groups.delete(proc);
      resolve({ code: -1, signal: null });
    });
  });
  const running = () => proc.exitCode === null && proc.signalCode === null && groups.has(proc);
  return {
    name,
    proc,
    logFile: o.logFile ?? null,
    running,
    logTail: () => {
      if (!o.logFile) return '';
      try {
        return readFileSync(o.logFile, 'utf8').slice(-4096);
      } catch {
        return '';
      }
    },
    exited: /** @type {Child['exited']} */ (exited),
    async kill(signal = 'SIGKILL') {
      if (!running()) return;
      killGroupNow(proc, signal);
      const timeout = new Promise((r) => setTimeout(r, 10_000, 'timeout'));
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        killGroupNow(proc, 'SIGKILL');
        await exited;
      }
    },
  };
}

/** Stops every child still running (SIGTERM, then SIGKILL after 10 s each). */
export async function stopAll() {
  await Promise.all(
    [...groups].map(async (proc) => {
      const exited = new Promise((r) => proc.once('exit', r));
      killGroupNow(proc, 'SIGTERM');
      const timer = setTimeout(() => killGroupNow(proc, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * Polls `check` until it returns a truthy value (resolved with it), `budgetMs` passes, or
 * `abort()` names why waiting is pointless (a child died). Never a fixed sleep: every `everyMs`.
 * @template T
 * @param {string} what
 * @param {() => Promise<T> | T} check
 * @param {{ budgetMs: number, everyMs?: number, abort?: () => string | null }} o
 * @returns {Promise<NonNullable<T>>}
 */
export async function waitFor(what, check, o) {
  const end = Date.now() + o.budgetMs;
  for (;;) {
    const why = o.abort?.();
    if (why) throw new Error(`${what}: ${why}`);
    const value = await check();
    if (value) return /** @type {NonNullable<T>} */ (value);
    if (Date.now() > end) throw new Error(`${what}: not within ${Math.round(o.budgetMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, o.everyMs ?? 250));
  }
}
