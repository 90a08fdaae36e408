/** "1 file", "2 files": counts in messages people read. */
export function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** Human or machine output for every command: `--json` prints exactly one JSON object. */
export function printResult(json: boolean, value: unknown, human: () => string): void {
  if (json) process.stdout.write(`${JSON.stringify(value)}\n`);
  else process.stdout.write(`${human()}\n`);
}

interface CodedError {
  code?: unknown;
  message?: unknown;
  hint?: unknown;
}

/** Prints an error (with its stable code and a hint on how to fix it) and returns exit code 1. */
export function reportError(err: unknown, json: boolean): number {
  const e = (err ?? {}) as CodedError;
  const code = typeof e.code === 'string' ? e.code : 'FLOTILLA_ERR_INTERNAL';
  const message = typeof e.message === 'string' ? e.message : String(err);
  // A relayed server error may come without a hint (empty string): print none then.
  const hint = typeof e.hint === 'string' && e.hint !== '' ? e.hint : undefined;
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message, hint } })}\n`);
  } else {
    process.stderr.write(`error ${code}: ${message}\n`);
    if (hint) process.stderr.write(`  hint: ${hint}\n`);
  }
  return 1;
}
