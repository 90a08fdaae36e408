import { parseDemoArgs, runDemo } from '@flotilla/fleet-simulator';
import { describe, expect, it } from 'vitest';

describe('the demo story', () => {
  it('rolls 1.1.0 out through its phases with deltas, then catches 1.2.0-bad at its canary', async () => {
    const lines: string[] = [];
    const result = await runDemo(parseDemoArgs(['--devices', '12', '--seed', '3']), {
      write: (s: string) => lines.push(s),
    });
    try {
      const [good, bad] = result.summary.rollouts;
      expect(result.summary.devices).toBe(12);
      expect(good).toEqual({
        release: '1.1.0',
        status: 'completed',
        healthy: 12,
        failed: 0,
        rolledBack: 0,
        notStarted: 0,
      });
      // The canary of the bad release fell back by itself; the rest of the fleet never saw it.
      expect(bad?.release).toBe('1.2.0-bad');
      expect(bad?.status).toBe('paused');
      expect(bad?.healthy).toBe(0);
      expect(bad?.rolledBack).toBeGreaterThanOrEqual(1);
      expect(bad?.notStarted).toBe(12 - 1);
      const rollbacks = result.outcomes[1]?.rollbacks ?? [];
      expect(rollbacks.length).toBe(bad?.rolledBack);
      for (const r of rollbacks) {
        expect(r.reason).toContain('app.service failed: exit code 3');
        expect(r.runningNow).toBe('1.1.0');
      }
      // The server's view of the fleet matches the devices': everyone on 1.1.0.
      const versions = await result.world.server.deviceVersions();
      expect([...versions.values()].every((v) => v === '1.1.0')).toBe(true);
      expect(result.summary.bytes.sent).toBeGreaterThan(0);
      expect(result.summary.bytes.sent).toBeLessThan(result.summary.bytes.fullEquivalent / 4);
      expect(result.ok).toBe(true);
      expect(lines.join('')).toContain(result.dashboardUrl);
    } finally {
      await result.world.close();
    }
  }, 240_000);
});
