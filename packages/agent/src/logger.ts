/** The subset of pino the agent uses: hundreds of agents in one process share one root logger. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

/** pino, loaded on demand (embedders such as the simulator bring their own logger). */
export async function createLogger(
  level: string = process.env.FLOTILLA_LOG_LEVEL ?? 'info',
): Promise<Logger> {
  const { default: pino } = await import('pino');
  return pino({ name: 'flotilla-agent', level }) as unknown as Logger;
}
