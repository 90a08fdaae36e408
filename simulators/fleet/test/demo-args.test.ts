import { describe, expect, it } from 'vitest';
import { parseDemoArgs } from '../src/demo-args.js';

describe('demo arguments', () => {
  it('defaults to 50 devices, human output, server stopped at the end', () => {
    expect(parseDemoArgs([])).toMatchObject({ devices: 50, json: false, keepRunning: false });
  });

  it('accepts `pnpm demo -- --json` (the separator is ignored)', () => {
    expect(parseDemoArgs(['--', '--json', '--devices', '10'])).toMatchObject({ devices: 10, json: true });
  });

  it.each([
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
