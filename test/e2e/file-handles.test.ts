import { readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { collectGarbage } from '../setup/collect-garbage.js';
import { smallWorld } from './helpers.js';

/**
 * A power cut in the simulator freezes the agent where it was: its pending I/O never returns, so
 * nothing after it (a `finally` that closes a file) ever runs. A real kernel closes a dead
 * process's files; the agent must do the same when it is stopped or killed, or the files stay
 * open until the garbage collector closes them with "Closing file descriptor N on garbage
 * collection" (DEP0137, an error in a future Node).
 */

/** Files this process holds open under `dir` (Linux: /proc/self/fd). */
function openFilesUnder(dir: string): string[] {
  const held: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) held.push(target);
    } catch {
      // closed between the listing and the readlink
    }
  }
  return held;
}

describe('files of an agent that lost power', () => {
  it('are closed when the agent dies, never left to the garbage collector', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      // A slow link keeps the delta download (and its spool file) open when the power goes.
      const world = await smallWorld(2, [
        {
          name: 'cut-while-downloading',
          share: 1,
          network: { bytesPerSecond: 64 * 1024 },
          powerCut: { inStates: ['Downloading'], delayMs: [300, 300], offMs: 100 },
        },
      ]);
      const workDir = world.workDir;
      try {
        await world.publish('1.1.0');
        await world.server.startRollout({
          name: 'cut while downloading',
          release: '1.1.0',
          phases: [{ name: 'all', percent: 100, errorThreshold: 100 }],
          maxConcurrent: 2,
          deviceTimeoutSeconds: 600,
        });
        await world.fleet.waitFor(
          'every device cut and running again',
          () => world.fleet.devices.every((d) => d.counters.powerCuts === 1 && d.phase === 'running'),
          120_000,
        );
      } finally {
        await world.close();
      }
      expect(openFilesUnder(workDir)).toEqual([]);
      for (let round = 0; round < 3; round++) {
        collectGarbage();
        // process warnings are emitted on a later tick.
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  }, 240_000);
});
