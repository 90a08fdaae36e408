import { describe, expect, it } from 'vitest';
import { parseDemoArgs } from '../src/demo-args.js';

describe('demo arguments', () => {
  it('defaults to 50 devices, human output, server stopped at the end', () => {
    expect(parseDemoArgs([])).toMatchObject({ devices: 50, json: false, keepRunning: false });
  });

  it('accepts `pnpm demo -- --json` (the separator is ignored)', () => {
    expect(parseDemoArgs(['--', '--json', '--devices', '10'])).toMatchObject({ devices: 10, json: true });
  });

  it('reads inline values, repeated faults and -h', () => {
    const args = parseDemoArgs([
      '--devices=12',
      '--fault',
      'power-cut:0.1',
      '--fault=slow-network:0.2',
      '-h',
    ]);
    expect(args).toMatchObject({ devices: 12, help: true });
    expect(args.faults).toHaveLength(2);
  });

  it.each([
    ['--devices'],
    ['--devices', '--json'],
    ['--json', 'stray'],
    ['--devices', '0'],
    ['--devices', '2001'],
    ['--devices', 'many'],
    ['--frobnicate'],
  ])('refuses %s %s with a coded error', (...args) => {
    expect(() => parseDemoArgs(args.filter((a): a is string => a !== undefined))).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_SIM_BAD_ARGUMENT' }),
    );
  });
});
