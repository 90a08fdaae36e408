import { open, readFile, rm } from 'node:fs/promises';
import { AgentError } from '../errors.js';

/** Linux's id of this boot: a lock written before a reboot is stale whatever its pid. */
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/**
 * One agent per device at a time (the daemon or a local install): a pid file taken with O_EXCL,
 * holding the pid and the boot id. A stale file is taken over: its process is gone, or it was
 * written in an earlier boot (the pid file lives on /data, and after a reboot its pid may belong
 * to another process: init starts the same services in the same order).
 */
export async function acquireAgentLock(
  path: string,
  opts: { bootIdFile?: string } = {},
): Promise<() => Promise<void>> {
  const bootId = await readBootId(opts.bootIdFile ?? BOOT_ID_FILE);
  for (let i = 0; i < 2; i++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      try {
        await fh.writeFile(`${process.pid}${bootId ? ` ${bootId}` : ''}\n`);
      } finally {
        await fh.close();
      }
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const [pidText, heldBoot] = (await readFile(path, 'utf8').catch(() => '')).trim().split(/\s+/);
      const pid = Number.parseInt(pidText ?? '', 10);
      const sameBoot = !bootId || !heldBoot || heldBoot === bootId;
      if (sameBoot && Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid))
        throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `agent process ${pid} holds ${path}`);
      await rm(path, { force: true });
    }
  }
  throw new AgentError('FLOTILLA_ERR_AGENT_BUSY', `cannot take ${path}`);
}

async function readBootId(file: string): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '')).trim();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
