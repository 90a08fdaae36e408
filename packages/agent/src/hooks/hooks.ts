import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execBounded } from '../exec.js';

export const HOOK_POINTS = [
  'before-install',
  'after-install',
  'before-reboot',
  'after-commit',
  'on-rollback',
] as const;
export type HookPoint = (typeof HOOK_POINTS)[number];

/** Exit codes with a meaning (Mender's state-script convention). */
export const HOOK_EXIT = { ok: 0, veto: 1, retryLater: 21 } as const;

export interface HookRun {
  name: string;
  exitCode: number | null;
  output: string;
  truncated: boolean;
}

export interface HookEnv {
  deploymentId: string;
  version: string;
  targetSlot: string;
}

/** Finds and runs the hooks of one point. */
export interface HookRunner {
  list(point: HookPoint): Promise<string[]>;
  run(point: HookPoint, name: string, env: HookEnv): Promise<HookRun>;
}

/** Executables in `<dir>/<point>/`, run in name order, with the deployment in the environment. */
export class DirHookRunner implements HookRunner {
  constructor(
    readonly dir: string,
    private readonly opts: { timeoutMs: number; maxOutputBytes: number },
  ) {}

  async list(point: HookPoint): Promise<string[]> {
    const pointDir = join(this.dir, point);
    const names = await readdir(pointDir).catch(() => [] as string[]);
    const out: string[] = [];
    for (const n of names.sort()) {
      if (n.startsWith('.')) continue;
      if (
        await access(join(pointDir, n), constants.X_OK).then(
          () => true,
          () => false,
        )
      )
        out.push(n);
    }
    return out;
  }

  async run(point: HookPoint, name: string, env: HookEnv): Promise<HookRun> {
    const result = await execBounded([join(this.dir, point, name)], {
      timeoutMs: this.opts.timeoutMs,
      maxOutputBytes: this.opts.maxOutputBytes,
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        FLOTILLA_HOOK: point,
        FLOTILLA_DEPLOYMENT_ID: env.deploymentId,
        FLOTILLA_VERSION: env.version,
        FLOTILLA_TARGET_SLOT: env.targetSlot,
      },
    }).catch((err: Error) => ({ code: 127, output: err.message, truncated: false, timedOut: false }));
    return {
      name,
      exitCode: result.timedOut ? null : result.code,
      output: result.timedOut ? `${result.output}\n[killed after ${this.opts.timeoutMs} ms]` : result.output,
      truncated: result.truncated,
    };
  }
}
