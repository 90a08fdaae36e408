import { DEMO_USAGE, parseDemoArgs } from './demo-args.js';
import { runDemo } from './demo-run.js';
import { isSimError } from './errors.js';

/** `pnpm demo`: the whole story on one machine (see docs/demo.md). */
async function main(): Promise<number> {
  let args: ReturnType<typeof parseDemoArgs>;
  try {
    args = parseDemoArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${DEMO_USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  const out = process.stdout;
  const result = await runDemo(args, out);
  if (args.json) process.stdout.write(`${JSON.stringify(result.summary)}\n`);
  if (args.keepRunning) {
    out.write(`server keeps running: dashboard ${result.dashboardUrl}\n`);
    out.write(
      `sign in with the demo's admin token (TEST-ONLY, this run only): ${result.world.server.token}\n`,
    );
    out.write('Ctrl-C to stop\n');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
  await result.world.close();
  return result.ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Everything was closed; a straggling socket must not keep the demo from exiting.
    setTimeout(() => process.exit(code), 5000).unref();
  },
  (err: unknown) => {
    const e = err as Error & { code?: string; hint?: string };
    process.stderr.write(`demo failed: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    if (isSimError(err) || e.hint) process.stderr.write(`hint: ${e.hint}\n`);
    process.exitCode = 1;
  },
);
