import { fileURLToPath } from 'node:url';

/**
 * The compiled file of a worker thread that sits next to the calling module. Worker threads
 * cannot load TypeScript, so when the caller itself runs from src/ (under vitest) the worker is
 * the one compiled into dist/ (`tsc -b` first).
 */
export function workerFile(callerUrl: string, name: string): string {
  const path = fileURLToPath(new URL(name, callerUrl));
  return callerUrl.endsWith('.ts') ? path.replace(/([\\/])src([\\/])(?!.*[\\/]src[\\/])/, '$1dist$2') : path;
}
