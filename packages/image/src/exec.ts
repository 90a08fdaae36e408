import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ImageError } from './errors.js';
import { IMAGE_LIMITS } from './limits.js';

// e2fsprogs lives in /usr/sbin, which a normal user's PATH often lacks.
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin'];
const resolved = new Map<string, string | null>();

/** Absolute path of a system tool, or null when it is not installed. */
export function findTool(name: string): string | null {
  if (resolved.has(name)) return resolved.get(name) ?? null;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  let found: string | null = null;
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      found = join(dir, name);
      break;
    } catch {}
  }
  resolved.set(name, found);
  return found;
}

/**
 * Which of these tools are not installed. Tests of optional real components (squashfs, erofs,
 * U-Boot env, GRUB env, Mosquitto, Chromium) skip themselves with this and name what is missing;
 * `.ci/run` installs them all, so CI always runs them.
 */
export function missingTools(names: readonly string[]): string[] {
  const missing = names.filter((n) => !findTool(n));
  if (missing.length > 0)
    process.stderr.write(
      `skipping tests that need: ${missing.join(', ')} (not installed; .ci/run installs them)\n`,
    );
  return missing;
}

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

/**
 * Runs a tool without a shell (arguments are never interpreted). Output is captured up to
 * `maxStdout`; a non-zero exit is FLOTILLA_ERR_IMAGE_TOOL_FAILED unless `allowFailure`.
 */
export async function runTool(
  name: string,
  args: string[],
  opts: {
    env?: Record<string, string>;
    stdin?: string;
    maxStdout?: number;
    allowFailure?: boolean;
    cwd?: string;
  } = {},
): Promise<RunResult> {
  const bin = findTool(name);
  if (!bin) throw new ImageError('FLOTILLA_ERR_IMAGE_TOOL_MISSING', name);
  const maxStdout = opts.maxStdout ?? IMAGE_LIMITS.maxToolOutputBytes;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    let outLen = 0;
    let overflow = false;
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      if (outLen + b.length > maxStdout) {
        overflow = true;
        child.kill('SIGKILL');
        return;
      }
      out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < IMAGE_LIMITS.maxToolOutputBytes) err += b.toString('utf8');
    });
    child.on('error', (e) =>
      reject(new ImageError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', `${name}: ${e.message}`, { cause: e })),
    );
    child.on('close', (code, signal) => {
      if (overflow) {
        reject(
          new ImageError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', `${name}: output larger than ${maxStdout} bytes`),
        );
        return;
      }
      const result = { stdout: Buffer.concat(out), stderr: err, code: code ?? 128 };
      if ((code !== 0 || signal) && !opts.allowFailure) {
        const text = (err || result.stdout.toString('utf8')).trim().split('\n').slice(-6).join(' | ');
        reject(new ImageError('FLOTILLA_ERR_IMAGE_TOOL_FAILED', `${name} exited ${code ?? signal}: ${text}`));
        return;
      }
      resolve(result);
    });
    child.stdin.on('error', () => {}); // a tool that exits early closes its stdin; the exit code tells
    child.stdin.end(opts.stdin ?? '');
  });
}
