import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FlockUpdateLock } from '../src/hooks/update-lock.js';
import { nextState } from '../src/state/machine.js';
import { MemoryHub } from '../src/testing.js';
import { offlineTransport } from '../src/wiring.js';

// Failures a user can see (a step's reason in a report, a log line) carry a FLOTILLA_ERR_* code
// and a hint, never an uncoded Error that arrives as FLOTILLA_ERR_INTERNAL.
describe('coded errors', () => {
  it('reports an update lock that cannot be probed with its own code and hint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-lock-'));
    try {
      const lock = new FlockUpdateLock(join(dir, 'no-such-dir', 'update.lock'));
      await expect(lock.held()).rejects.toMatchObject({
        code: 'FLOTILLA_ERR_AGENT_UPDATE_LOCK_PROBE',
        hint: expect.stringContaining('flock'),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a publish while offline with FLOTILLA_ERR_AGENT_OFFLINE (memory and local-install links)', async () => {
    const hub = new MemoryHub();
    const transport = hub.transport('dev-1');
    await expect(transport.publish('events', '{}')).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_OFFLINE',
    });
    await expect(offlineTransport.publish('events', '{}', 1)).rejects.toMatchObject({
      code: 'FLOTILLA_ERR_AGENT_OFFLINE',
    });
  });

  it('names a missing transition as an internal fault of the agent, coded', () => {
    expect(() => nextState('Idle', 'healthy')).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_AGENT_INTERNAL' }),
    );
  });
});
