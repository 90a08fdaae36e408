// Part 3 of `pnpm bench cluster`: rollout-engine pass time with N devices in the store, on SQLite
// and on PostgreSQL. Each (store, size) runs in a child process of its own (engine-child.mjs), so
// its memory is its own and a case that overruns its budget is killed without taking the rest.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { removeTempDir, tempDir } from '../../test/cluster/processes.mjs';

const CHILD = fileURLToPath(new URL('./engine-child.mjs', import.meta.url));

/** One case; rejects when the child fails or exceeds `budgetMs` (it is killed then). */
function runCase(args, budgetMs) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [CHILD, ...args],
      { timeout: budgetMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err) return reject(new Error(`engine case ${args.slice(1, 3).join(' ')}: ${err.message}`));
        resolve(JSON.parse(stdout.trim().split('\n').at(-1)));
      },
    );
    child.stderr.pipe(process.stderr);
    // The bench stopped (an error, Ctrl-C): the case stops with it.
    const reap = () => child.kill('SIGKILL');
    process.once('exit', reap);
    child.once('exit', () => process.off('exit', reap));
  });
}

/**
 * @param {{ sizes: number[], stores: ('sqlite' | 'postgres')[], passes: number, pg: { createDatabase: (name: string) => Promise<string> } | null, log: (s: string) => void }} o
 */
export async function engineBench(o) {
  const results = [];
  for (const devices of o.sizes)
    for (const store of o.stores) {
      o.log(`  engine: ${store}, ${devices.toLocaleString('en')} devices`);
      const database = store === 'postgres' ? await o.pg.createDatabase(`engine_${devices}`) : null;
      // Filling runs at >20,000 rows/s here; a pass at 1M devices takes tens of seconds.
      const budgetMs = 300_000 + devices * 2 + o.passes * devices * 0.2;
      const dataDir = tempDir('flotilla-bench-engine-');
      const result = await runCase(
        [dataDir, store, String(devices), String(o.passes), ...(database ? [database] : [])],
        budgetMs,
      ).finally(() => removeTempDir(dataDir));
      // Each case's figures as soon as it ends: a long campaign stopped later keeps them.
      o.log(`    ${JSON.stringify(result)}`);
      results.push(result);
    }
  return results;
}
