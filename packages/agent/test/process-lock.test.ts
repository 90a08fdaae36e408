import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireAgentLock } from '../src/cli/process-lock.js';

/**
 * The agent's pid lock lives on /data, which survives reboots. After a reboot init starts the
 * same services in the same order, so the old pid often belongs to another live process.
 */
describe('agent pid lock', () => {
  let dir: string;
  let bootIdFile: string;
  let lock: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flotilla-lock-'));
    bootIdFile = join(dir, 'boot_id');
    lock = join(dir, 'agent.pid');
    await writeFile(bootIdFile, 'boot-2\n');
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('takes over a lock from an earlier boot whose pid now belongs to another live process (pid reuse after reboot)', async () => {
    // process.ppid is alive and is not this process: as another service that got the old pid
    await writeFile(lock, `${process.ppid} boot-1\n`);
    const release = await acquireAgentLock(lock, { bootIdFile });
    expect(await readFile(lock, 'utf8')).toBe(`${process.pid} boot-2\n`);
    await release();
  });

  it('refuses while a live process of this boot holds the lock', async () => {
    await writeFile(lock, `${process.ppid} boot-2\n`);
    await expect(acquireAgentLock(lock, { bootIdFile })).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_BUSY',
    });
  });

  it('takes over the lock of a process that is gone', async () => {
    await writeFile(lock, '2147483646 boot-2\n');
    const release = await acquireAgentLock(lock, { bootIdFile });
    await release();
  });
});
