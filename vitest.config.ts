import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import workspace packages from their TypeScript sources, so a test run never depends on
// a stale build. Plain `node` (CLI, agent, demo) uses the compiled `dist/` instead.
const src = (dir: string) => fileURLToPath(new URL(`${dir}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@flotilla/protocol': src('packages/protocol'),
      '@flotilla/delta': src('packages/delta'),
      '@flotilla/image': src('packages/image'),
      '@flotilla/server': src('packages/server'),
      '@flotilla/agent/testing': fileURLToPath(new URL('packages/agent/src/testing.ts', import.meta.url)),
      '@flotilla/agent': src('packages/agent'),
      '@flotilla/cli': src('packages/cli'),
      '@flotilla/fleet-simulator': src('simulators/fleet'),
    },
  },
  test: {
    // CI asks for a JSON report (for its closing `N passed, N failed` line) through the environment,
    // so that it runs exactly the README's `pnpm test`.
    ...(process.env.FLOTILLA_TEST_REPORT
      ? { reporters: ['default', 'json'], outputFile: { json: process.env.FLOTILLA_TEST_REPORT } }
      : {}),
    include: ['packages/*/test/**/*.test.ts', 'simulators/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    // A FileHandle left to the garbage collector fails its test file (best-effort: see the file);
    // --trace-warnings prints where any other warning was emitted.
    setupFiles: ['./test/setup/file-leak-warnings.ts'],
    execArgv: ['--trace-warnings'],
  },
});
