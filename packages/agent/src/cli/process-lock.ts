import { open, readFile, rm } from 'node:fs/promises';
import { AgentError } from '../errors.js';

/**
 * One agent per device at a time (the daemon or a local install): a pid file taken with O_EXCL.
 * A stale file (its process is gone) is taken over.
 */
export async function acquireAgentLock(path: string): Promise<() => Promise<void>> {
  for (let i = 0; i < 2; i++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid))
        throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `agent process ${pid} holds ${path}`);
      await rm(path, { force: true });
    }
  }
  throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `cannot take ${path}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
