import type { Logger } from 'pino';

/**
 * Runs store work that nobody awaits (a timer, a broker hook, a hook after a commit) and logs its
 * failure with a coded error instead of leaving an unhandled rejection. Work that fails without
 * a code of its own is a store failure (the only I/O such work does).
 */
export function inBackground(log: Logger, what: string, work: Promise<unknown>): void {
  work.catch((err: unknown) => {
    const code = (err as { code?: unknown } | null)?.code;
    log.error(
      {
        err,
        code:
          typeof code === 'string' && code.startsWith('FLOTILLA_ERR_') ? code : 'FLOTILLA_ERR_SERVER_STORE',
      },
      `${what} failed`,
    );
  });
}
