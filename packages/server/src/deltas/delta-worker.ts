import { parentPort, workerData } from 'node:worker_threads';
import { createDelta } from '@flotilla/delta';

/**
 * Runs in a worker thread (compiled JS from dist/): delta encoding is CPU-heavy and holds both
 * images in memory, so it must never run on the thread that serves the API and the broker.
 */
const job = workerData as { basePath: string; targetPath: string; outPath: string };
try {
  const stats = await createDelta({
    basePath: job.basePath,
    targetPath: job.targetPath,
    outPath: job.outPath,
  });
  parentPort!.postMessage({ ok: true, stats });
} catch (err) {
  const e = err as { code?: string; message?: string };
  parentPort!.postMessage({
    ok: false,
    code: e.code ?? 'FLOTILLA_ERR_SERVER_DELTA',
    message: e.message ?? String(err),
  });
}
