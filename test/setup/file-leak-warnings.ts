import { afterAll, expect } from 'vitest';
import { collectGarbage } from './collect-garbage.js';

/**
 * Setup file for every test file (vitest.config.ts `setupFiles`): a FileHandle left to the garbage
 * collector fails the test file that dropped it. Node closes such a file with the warning "Closing
 * file descriptor N on garbage collection" and, once per process, DEP0137 (an error in a future
 * Node). Other warnings are left to Node's own printing.
 *
 * Best-effort: a handle is only found once it is collected. A full collection at the end of each
 * file finds what that file dropped and no longer reaches; a handle still reachable then (held by
 * a module-level cache, say) is found later or never.
 */

type NodeWarning = Error & { code?: string };

/** The warnings Node emits when the garbage collector closes a file nobody closed. */
export function isFileLeftToGc(warning: NodeWarning): boolean {
  return (
    warning.code === 'DEP0137' || /^Closing file descriptor \d+ on garbage collection$/.test(warning.message)
  );
}

const leaks: string[] = [];
const onWarning = (warning: NodeWarning) => {
  if (!isFileLeftToGc(warning)) return;
  // The test last started when the collector ran: a hint, not proof (the file may have been dropped earlier).
  const during = expect.getState().currentTestName;
  leaks.push(
    `${warning.name}${warning.code ? ` [${warning.code}]` : ''}: ${warning.message}` +
      (during ? ` (last test started: "${during}")` : ''),
  );
};
process.on('warning', onWarning);

afterAll(async () => {
  // Node emits the warning from an immediate after the collection: let a few run.
  for (let round = 0; round < 3; round++) {
    collectGarbage();
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  process.off('warning', onWarning);
  if (leaks.length > 0) {
    throw new Error(
      `a file was left to the garbage collector in this test file; close every FileHandle in a finally:\n  ${leaks.join('\n  ')}`,
    );
  }
});
