import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../src/main.js';
import { type ApiServer, startApiServer } from './api-server.js';
import { startFlotilla } from './run-cli.js';

/** Hints that tell people which command to run must name commands that exist, and that work. */
const SIGN_IN = fileURLToPath(new URL('../../server/dashboard/app/pages/sign-in.js', import.meta.url));
const TOKEN = 'TEST-ONLY-admin-token-hints-0123456789abcdef0123456789';

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

const page = readFileSync(SIGN_IN, 'utf8');
const hinted = [...page.matchAll(/<code>flotilla ([^<]+)<\/code>/g)].map((m) => m[1]!.split(/\s+/));

describe('command hints', () => {
  let api: ApiServer;

  beforeAll(async () => {
    api = await startApiServer('flotilla-cli-hints-', TOKEN);
  });

  afterAll(async () => api?.close());

  it('the dashboard sign-in page names no flotilla command that does not exist, and says where a token is', async () => {
    const program = await buildProgram();
    for (const words of hinted)
      expect(commandExists(program, words), `flotilla ${words.join(' ')}`).toBe(true);
    expect(page).toContain('admin-token');
  });

  it('the sign-in page tells an admin to make tokens with `flotilla tokens create --role`, and that command works', async () => {
    const create = hinted.find((w) => w.slice(0, 2).join(' ') === 'tokens create');
    expect(create, 'the sign-in page names `flotilla tokens create`').toBeDefined();
    expect(create).toContain('--role');
    // Run exactly what the page says (as JSON) against a real server with its admin token.
    const r = await startFlotilla([...create!, '--json'], {
      FLOTILLA_SERVER: api.server.addresses.api,
      FLOTILLA_TOKEN: TOKEN,
    }).done;
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const role = create![create!.indexOf('--role') + 1];
    expect(r.json()).toMatchObject({ ok: true, token: { role }, secret: expect.stringMatching(/^flt_/) });
    // The new token signs in the way the page then asks for.
    const who = await fetch(`${api.server.addresses.api}/api/v1/auth/whoami`, {
      headers: { authorization: `Bearer ${r.json().secret}` },
    });
    expect(await who.json()).toMatchObject({ role });
  }, 60_000);
});
