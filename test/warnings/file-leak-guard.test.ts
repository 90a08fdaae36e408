import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface FileResult {
  name: string;
  status: string;
  message: string;
}

/**
 * The suite's setup file (test/setup/file-leak-warnings.ts) run by a vitest of its own on two
 * fixtures — one drops an open FileHandle, one closes it — so the leak stays out of this worker.
 */
describe('a FileHandle left to the garbage collector', () => {
  it('fails the test file that dropped it, and only that one', async () => {
    const out = await mkdtemp(join(tmpdir(), 'flotilla-leak-guard-'));
    try {
      const report = join(out, 'report.json');
      const env = { ...process.env };
      delete env.FLOTILLA_TEST_REPORT;
      const run = promisify(execFile)(
        process.execPath,
        [
          join(root, 'node_modules/vitest/vitest.mjs'),
          'run',
          '--config',
          'test/warnings/fixtures/vitest.config.ts',
          '--reporter=json',
          `--outputFile=${report}`,
        ],
        { cwd: root, env, timeout: 180_000 },
      );
      // vitest exits 1 when a file fails: that is the expected outcome here.
      await expect(run).rejects.toMatchObject({ code: 1 });
      const { testResults } = JSON.parse(await readFile(report, 'utf8')) as { testResults: FileResult[] };
      const byFile = Object.fromEntries(testResults.map((r) => [r.name.split('/').pop(), r]));
      expect(byFile['closes-its-file.fixture.ts']).toMatchObject({ status: 'passed' });
      expect(byFile['drops-a-file.fixture.ts']?.status).toBe('failed');
      expect(byFile['drops-a-file.fixture.ts']?.message).toMatch(
        /a file was left to the garbage collector[\s\S]*Closing file descriptor \d+ on garbage collection/,
      );
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 240_000);
});
