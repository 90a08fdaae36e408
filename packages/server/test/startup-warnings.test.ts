import { afterEach, describe, expect, it } from 'vitest';
import { cleanupDirs, startTestServer } from './helpers.js';

afterEach(() => cleanupDirs());

describe('server start-up', () => {
  it('emits no deprecation or other process warning (fastify options are current)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const server = await startTestServer();
      await server.close();
      // process warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });
});
