import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../src/main.js';

/** Hints that tell people which command to run must name commands that exist. */
const SIGN_IN = fileURLToPath(new URL('../../server/dashboard/app/pages/sign-in.js', import.meta.url));

function commandExists(program: Command, words: string[]): boolean {
  let cmd: Command | undefined = program;
  for (const word of words) {
    if (word.startsWith('-')) break;
    const sub: Command | undefined = cmd.commands.find((c) => c.name() === word);
    if (!sub) return cmd.commands.length === 0; // an argument of a leaf command
    cmd = sub;
  }
  return cmd !== program;
}

describe('command hints', () => {
  it('the dashboard sign-in page names no flotilla command that does not exist, and says where a token is', async () => {
    const page = readFileSync(SIGN_IN, 'utf8');
    const program = await buildProgram();
    const hinted = [...page.matchAll(/<code>flotilla ([^<]+)<\/code>/g)].map((m) => m[1]!.split(/\s+/));
    for (const words of hinted)
      expect(commandExists(program, words), `flotilla ${words.join(' ')}`).toBe(true);
    expect(page).toContain('admin-token');
  });
});
