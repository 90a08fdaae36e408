import { AgentError } from '../errors.js';
import { execBounded } from '../exec.js';

/** What "reboot" means: a command on a device, a restart of the agent in the simulator. */
export interface RebootAction {
  reboot(reason: string): Promise<void>;
}

export class CommandReboot implements RebootAction {
  constructor(private readonly argv: string[]) {}
  async reboot(): Promise<void> {
    const r = await execBounded(this.argv, { timeoutMs: 60_000 });
    if (r.code !== 0)
      throw new AgentError('FLOTILLA_ERR_AGENT_REBOOT', `${this.argv.join(' ')}: ${r.output.trim()}`);
  }
}
