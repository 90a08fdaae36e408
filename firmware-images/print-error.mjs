// How the build scripts in firmware-images/ report a failure: `error CODE: message` and `hint: …`
// on stderr, or one JSON line on stdout with --json; the exit status says a bad argument (2) from
// a failed build (1).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { ImageError } = await import(join(here, '../packages/image/dist/index.js'));

/** An error thrown for a bad or missing command-line argument: the script exits 2. */
export function usageError(code, detail) {
  return Object.assign(new ImageError(code, detail), { usage: true });
}

/** The Flotilla-coded form of any error: parseArgs' own errors are bad arguments, anything else uncoded a failed tool. */
function coded(err) {
  if (typeof err?.code === 'string' && err.code.startsWith('FLOTILLA_ERR_')) return err;
  if (typeof err?.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS_'))
    return usageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', err.message);
  return new ImageError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', err?.message ?? String(err), { cause: err });
}

/** Prints the failure and ends the process (exit 2 for a usage error, 1 otherwise). */
export function exitWithError(err, { json = false } = {}) {
  const e = coded(err);
  if (json)
    process.stdout.write(
      `${JSON.stringify({ ok: false, code: e.code, message: e.message, hint: e.hint })}\n`,
    );
  else process.stderr.write(`error ${e.code}: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
  process.exit(e.usage ? 2 : 1);
}
