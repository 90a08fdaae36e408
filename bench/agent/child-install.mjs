// Runs one agent in this process and installs the offer in argv[2] (a JSON file written by
// memory.mjs), so the parent can read this process's peak RSS from /proc. Prints one JSON line.
import { readFile } from 'node:fs/promises';
import { createAgent, HttpFetcher } from '@flotilla/agent';
import { MemoryHub, SimDevice } from '@flotilla/agent/testing';

const job = JSON.parse(await readFile(process.argv[2], 'utf8'));
const dev = new SimDevice(job.dir, 'bench-1', 'sim-board-v1');
const hub = new MemoryHub();
let rebooted = false;
const agent = createAgent(
  dev.config({ driftCheck: false }),
  dev.deps({
    transport: hub.transport('bench-1'),
    fetcher: new HttpFetcher(),
    reboot: {
      reboot: async () => {
        rebooted = true;
      },
    },
  }),
);
await agent.start();
if (job.offer) {
  const t0 = performance.now();
  hub.sendCommand('bench-1', { schemaVersion: 1, type: 'offer', commandId: 'bench', offer: job.offer });
  await agent.settled();
  const ms = Math.round(performance.now() - t0);
  // What the install left behind once garbage is collected (the parent passes --expose-gc):
  // if it grew with the image, something would be holding image-sized state.
  globalThis.gc?.();
  const m = process.memoryUsage();
  const retainedMiB = +((m.heapUsed + m.external) / 1048576).toFixed(1);
  console.log(
    JSON.stringify({ rebooted, state: agent.rec.state, lastError: agent.rec.lastError, ms, retainedMiB }),
  );
} else {
  // Idle: collect start-up garbage (the parent runs this with --expose-gc), stay up until measured.
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, job.idleMs));
  console.log(JSON.stringify({ state: agent.rec.state }));
}
await agent.stop();
