import { spawn } from 'node:child_process';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout then stderr, cut to `maxOutputBytes` (the tail is kept: errors come last). */
  output: string;
  stdout: string;
  truncated: boolean;
  timedOut: boolean;
}

/**
 * Runs a program without a shell, bounded in time and in the output it keeps. Never throws for a
 * non-zero exit: the caller decides what an exit code means.
 */
export function execBounded(
  argv: readonly string[],
  opts: {
    input?: string;
    timeoutMs?: number;
    maxOutputBytes?: number;
    env?: NodeJS.ProcessEnv;
    signal?: AbortSignal;
  } = {},
): Promise<ExecResult> {
  const max = opts.maxOutputBytes ?? 64 * 1024;
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) return reject(new TypeError('empty command'));
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      signal: opts.signal,
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let stdout = '';
    let truncated = false;
    let timedOut = false;
    const keep = (b: Buffer, isStdout: boolean) => {
      if (isStdout && stdout.length < max) stdout += b.toString('utf8', 0, Math.min(b.length, max));
      out.push(b);
      outLen += b.length;
      // Keep exactly the last `max` bytes: errors come at the end of the output.
      while (outLen > max) {
        const first = out[0]!;
        const excess = outLen - max;
        if (first.length <= excess) {
          out.shift();
          outLen -= first.length;
        } else {
          out[0] = first.subarray(excess);
          outLen -= excess;
        }
        truncated = true;
      }
    };
    child.stdout.on('data', (b: Buffer) => keep(b, true));
    child.stderr.on('data', (b: Buffer) => keep(b, false));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output: Buffer.concat(out).toString('utf8'), stdout, truncated, timedOut });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
