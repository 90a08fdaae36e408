// Every bench's command line: node:util parseArgs in strict mode, so a mistyped flag stops the
// bench with the usage instead of running it with defaults. --help (-h) prints the usage.
import { parseArgs } from 'node:util';

/** parseArgs({ strict: true }) with --help added; a bad command line prints the usage and exits 2. */
export function benchArgs(usage, { options = {}, allowPositionals = false, args } = {}) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    usageError(usage, err.message);
  }
  if (parsed.values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return parsed;
}

/** A command line the bench cannot use (parsed, but out of range): the message, the usage, exit 2. */
export function usageError(usage, message) {
  process.stderr.write(`error: ${message}\n${usage}\n`);
  process.exit(2);
}
