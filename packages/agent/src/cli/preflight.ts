import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfigFile } from '../config.js';
import { AgentError, type AgentErrorCode } from '../errors.js';

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Before the agent starts: every file the config names must be there, and a missing one is named
 * with a code of its own and the fix — not an internal error from deep inside a backend. (The data
 * directory is created by the agent; the device key is checked where it is read.)
 */
export async function checkConfiguredFiles(file: AgentConfigFile): Promise<void> {
  const b = file.bootloader;
  const wanted: [string, string, AgentErrorCode][] = [
    [
      b.kind === 'file' ? b.path : b.kind === 'grub' ? b.envFile : b.fwEnvConfig,
      `bootloader.${b.kind === 'file' ? 'path' : b.kind === 'grub' ? 'envFile' : 'fwEnvConfig'}`,
      'FLOTILLA_ERR_AGENT_BOOTENV_NOT_FOUND',
    ],
    [join(file.trustDir, 'root.json'), 'trustDir/root.json', 'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND'],
    [file.slots.A.path, 'slots.A.path', 'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND'],
    [file.slots.B.path, 'slots.B.path', 'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND'],
  ];
  if (file.factoryReleaseFile)
    wanted.push([file.factoryReleaseFile, 'factoryReleaseFile', 'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND']);
  for (const key of ['caFile', 'artifactTokenFile'] as const) {
    const path = file.server?.[key];
    if (path) wanted.push([path, `server.${key}`, 'FLOTILLA_ERR_AGENT_FILE_NOT_FOUND']);
  }
  for (const [path, field, code] of wanted)
    if (!(await exists(path))) throw new AgentError(code, `${field}: ${path}`);
}
