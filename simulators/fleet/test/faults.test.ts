import { describe, expect, it } from 'vitest';
import { isSimError } from '../src/errors.js';
import { assignFaults, parseFaultSpec, UPDATE_STATES } from '../src/faults.js';
import { PowerGate } from '../src/power.js';
import { createRng, pickIndices } from '../src/rng.js';

const ids = Array.from({ length: 100 }, (_, i) => `dev-${i}`);

describe('fault assignment', () => {
  it('gives a share of the fleet a profile, the same devices for the same seed', () => {
    const p = parseFaultSpec('power-cut:0.1');
    const a = assignFaults(ids, [p], 42);
    const b = assignFaults(ids, [p], 42);
    expect(a.size).toBe(10);
    expect([...a.keys()]).toEqual([...b.keys()]);
    expect([...assignFaults(ids, [p], 43).keys()]).not.toEqual([...a.keys()]);
  });

  it('cuts power by default only while an update is in progress (offer accepted up to the commit)', () => {
    expect(UPDATE_STATES).toEqual([
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      'Verifying',
      'Committed',
    ]);
  });

  it('never gives one device two profiles', () => {
    const m = assignFaults(ids, [parseFaultSpec('power-cut:0.6'), parseFaultSpec('slow-network:0.6')], 1);
    expect(m.size).toBe(100);
    const counts = [...m.values()].reduce<Record<string, number>>((acc, p) => {
      acc[p.name] = (acc[p.name] ?? 0) + 1;
      return acc;
    }, {});
    expect(counts['power-cut']).toBe(60);
    expect(counts['slow-network']).toBe(40);
  });

  it('rejects an unknown fault name with a stable code', () => {
    try {
      parseFaultSpec('meteor-strike:0.5');
      expect.unreachable();
    } catch (err) {
      expect(isSimError(err, 'FLOTILLA_ERR_SIM_BAD_ARGUMENT')).toBe(true);
    }
    expect(() => parseFaultSpec('power-cut:1.5')).toThrow(/NAME:SHARE/);
  });

  it('picks distinct indices', () => {
    const picked = pickIndices(createRng(5), 50, 20);
    expect(new Set(picked).size).toBe(20);
    expect(picked.every((i) => i >= 0 && i < 50)).toBe(true);
  });
});

describe('the power gate', () => {
  it('runs a cut handler at the cut, or at once when the power is already off (a file opened as it went)', () => {
    const power = new PowerGate();
    const ran: string[] = [];
    power.onCut(() => ran.push('before'));
    expect(ran).toEqual([]);
    power.cut();
    expect(ran).toEqual(['before']);
    power.onCut(() => ran.push('after'));
    expect(ran).toEqual(['before', 'after']);
  });
});
