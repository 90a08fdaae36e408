import { readFile } from 'node:fs/promises';
import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';

/** Lets applications defer the reboot: while the lock is held the agent waits (bounded). */
export interface UpdateLock {
  held(): Promise<boolean>;
}

/**
 * flock(2) semantics: an application holds the lock with `flock /run/flotilla/update.lock CMD`
 * (or flock() on an open fd). The agent probes with a non-blocking shared attempt, so it never
 * holds the lock itself for longer than the probe.
 */
export class FlockUpdateLock implements UpdateLock {
  constructor(
    readonly path: string,
    private readonly flockBin = 'flock',
  ) {}
  async held(): Promise<boolean> {
    const r = await execBounded(
      [this.flockBin, '--shared', '--nonblock', '--conflict-exit-code', '75', this.path, 'true'],
      {
        timeoutMs: 10_000,
      },
    );
    if (r.code === 0) return false;
    if (r.code === 75) return true;
    throw new AgentError(
      'FLOTILLA_ERR_AGENT_UPDATE_LOCK_PROBE',
      `flock probe of ${this.path}: ${r.output.trim()}`,
    );
  }
}

/** Pid file: held while the process it names is alive. */
export class PidFileUpdateLock implements UpdateLock {
  constructor(readonly path: string) {}
  async held(): Promise<boolean> {
    const text = await readFile(this.path, 'utf8').catch(() => null);
    const pid = text === null ? Number.NaN : Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
}

export class MemoryUpdateLock implements UpdateLock {
  isHeld = false;
  async held(): Promise<boolean> {
    return this.isHeld;
  }
}

export const noUpdateLock: UpdateLock = { held: async () => false };
