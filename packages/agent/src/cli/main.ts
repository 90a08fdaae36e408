import { access, constants, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseJson } from '@flotilla/protocol';
import { createAgent } from '../agent/agent.js';
import { loadConfigFile } from '../config.js';
import { AgentError, toErrorReport } from '../errors.js';
import { createLogger } from '../logger.js';
import { FileTrustStore } from '../trust/trust-store.js';
import { depsFromConfig } from '../wiring.js';
import { INIT_USAGE, runInit } from './init.js';
import { openLocalBundle } from './local-bundle.js';
import { checkConfiguredFiles } from './preflight.js';
import { acquireAgentLock } from './process-lock.js';

const USAGE = `flotilla-agent — the Flotilla device agent

Usage:
  flotilla-agent init --device-id ID --hardware HW --root ROOT.json --slot-a P --slot-b P --bootloader file|uboot|grub
                                                     set up a device (see \`flotilla-agent init --help\`)
  flotilla-agent run [--config FILE]                 run the agent (systemd service)
  flotilla-agent install FILE.flot [--config FILE]   install a signed bundle from a file (USB stick)
  flotilla-agent status [--json] [--config FILE]     slots, versions, bootloader and agent state
  flotilla-agent trust rotate ROOT.json [--config FILE]  rotate the trust root (signed by old and new keys)

The config file defaults to /etc/flotilla/agent.json (or $FLOTILLA_AGENT_CONFIG).`;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** Returns the process exit code; never calls process.exit (the bin does). */
export async function main(argv: string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  const defaultConfig = process.env.FLOTILLA_AGENT_CONFIG ?? '/etc/flotilla/agent.json';
  // init has options of its own and reads no config: it writes one.
  if (argv[0] === 'init') return init(argv.slice(1), defaultConfig, io);
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [cmd, ...rest] = positionals;
  if (values.help || !cmd) {
    io.out(USAGE);
    return cmd || values.help ? 0 : 2;
  }
  const configPath = resolve(values.config ?? defaultConfig);
  try {
    const file = await loadConfigFile(configPath);
    await checkConfiguredFiles(file);
    const logger = await createLogger(file.logLevel);
    if (cmd === 'status') {
      const { config, deps } = await depsFromConfig(file, { logger, offline: true });
      const rec = await deps.store.load();
      const status = {
        deviceId: config.deviceId,
        bootedSlot: await deps.bootloader.bootedSlot().catch((e: Error) => `unknown (${e.message})`),
        bootloader: await deps.bootloader
          .read()
          .then((s) => ({ kind: deps.bootloader.kind, ...s }))
          .catch((e: Error) => ({ kind: deps.bootloader.kind, error: e.message })),
        agent: rec
          ? {
              state: rec.state,
              committedSlot: rec.committedSlot,
              securityVersion: rec.securityVersion,
              slots: rec.slots,
              deployment: rec.deployment
                ? {
                    id: rec.deployment.id,
                    version: rec.deployment.version,
                    targetSlot: rec.deployment.targetSlot,
                    method: rec.deployment.method,
                    origin: rec.deployment.origin,
                  }
                : null,
              lastDeployment: rec.lastDeployment,
              lastError: rec.lastError,
            }
          : null,
      };
      if (values.json) io.out(JSON.stringify(status, null, 2));
      else {
        const agentStatus = status.agent;
        io.out(`device     ${status.deviceId}\nbooted     ${status.bootedSlot}`);
        io.out(`bootloader ${JSON.stringify(status.bootloader)}`);
        if (agentStatus) {
          io.out(
            `state      ${agentStatus.state}${agentStatus.deployment ? ` (${agentStatus.deployment.id} → ${agentStatus.deployment.version})` : ''}`,
          );
          io.out(`committed  ${agentStatus.committedSlot}  securityVersion ${agentStatus.securityVersion}`);
          for (const slot of ['A', 'B'] as const)
            io.out(
              `slot ${slot}     ${agentStatus.slots[slot]?.version ?? '-'} ${agentStatus.slots[slot]?.imageSha256?.slice(0, 16) ?? ''}`,
            );
          if (agentStatus.lastError)
            io.out(`last error ${agentStatus.lastError.code}: ${agentStatus.lastError.message}`);
        } else io.out('state      (never started)');
      }
      return 0;
    }
    if (cmd === 'trust' && rest[0] === 'rotate' && rest[1]) {
      const root = await new FileTrustStore(file.trustDir).rotate(
        parseJson(await readFile(rest[1])),
        new Date(),
      );
      io.out(`trust root is now version ${root.version}`);
      return 0;
    }
    if (cmd !== 'run' && cmd !== 'install') {
      io.err(USAGE);
      throw new AgentError('FLOTILLA_ERR_AGENT_USAGE', `unknown command '${cmd}'`);
    }
    const bundlePath = cmd === 'install' && rest[0] ? resolve(rest[0]) : null;
    if (cmd === 'install' && !bundlePath)
      throw new AgentError(
        'FLOTILLA_ERR_AGENT_USAGE',
        'install needs a bundle file: flotilla-agent install FILE.flot',
      );
    // Before the agent starts: a missing file is the user's mistake, not an internal error.
    if (bundlePath) await checkReadable(bundlePath);
    const release = await acquireAgentLock(join(file.dataDir, 'agent.pid'));
    try {
      const { config, deps } = await depsFromConfig(file, { logger, offline: cmd === 'install' });
      const agent = createAgent(config, deps);
      await agent.start();
      if (cmd === 'run') {
        await new Promise<void>((r) => {
          if (signal?.aborted) return r();
          signal?.addEventListener('abort', () => r(), { once: true });
        });
        await agent.stop();
        return 0;
      }
      const path = bundlePath!;
      let deploymentId: string;
      // SIGTERM during an install stops the agent like the daemon: the download or wait under way
      // is cancelled and the persisted state stays resumable (the next start continues it).
      const onSignal = () => void agent.stop();
      signal?.addEventListener('abort', onSignal, { once: true });
      try {
        await agent.settled();
        const bundle = await openLocalBundle(path, agent.root, new Date(), {
          hardware: config.hardware,
          securityVersion: agent.record.securityVersion,
        });
        deploymentId = await agent.installLocal(bundle);
      } catch (err) {
        // Refused before the state machine took it: still tell the server when next online.
        await agent.reportRefusedInstall(path, err);
        throw err;
      } finally {
        signal?.removeEventListener('abort', onSignal);
        await agent.stop();
      }
      const st = await agent.status();
      io.out(
        JSON.stringify({
          state: st.state,
          halted: st.halted,
          lastError: st.lastError,
          lastDeployment: st.lastDeployment,
        }),
      );
      // Success is this install's own: halted for its reboot, or committed (a resumed older
      // update that halts again is not).
      const ours =
        (st.halted && st.deployment?.id === deploymentId) ||
        (st.lastDeployment?.id === deploymentId && st.lastDeployment.outcome === 'Committed');
      return ours ? 0 : 1;
    } finally {
      await release();
    }
  } catch (err) {
    const r = printError(io, err);
    return r.code === 'FLOTILLA_ERR_AGENT_USAGE' ? 2 : 1;
  }
}

/** `error CODE: message` and `  hint: …`, the same shape as `flotilla`'s errors. */
function printError(io: CliIo, err: unknown): { code: string } {
  const r = toErrorReport(err);
  const hint = (err as { hint?: unknown }).hint;
  io.err(`error ${r.code}: ${r.message}${typeof hint === 'string' && hint ? `\n  hint: ${hint}` : ''}`);
  return r;
}

async function checkReadable(path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
    if (!(await stat(path)).isFile()) throw new Error('not a regular file');
  } catch (cause) {
    const why = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new AgentError('FLOTILLA_ERR_AGENT_BUNDLE_UNREADABLE', `${path}: ${why}`, { cause });
  }
}

async function init(argv: string[], defaultConfig: string, io: CliIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(INIT_USAGE);
    return 0;
  }
  try {
    const result = await runInit(argv, defaultConfig);
    if (argv.includes('--json')) io.out(JSON.stringify(result));
    else
      io.out(
        [
          `wrote ${result.config} (device ${result.deviceId})`,
          `  device key  ${result.deviceKeyFile} (public ${String(result.publicKey).slice(0, 16)}…; register it with the server)`,
          `  trust root  ${(result.trustRoot as { file: string }).file}`,
          `  bootloader  ${JSON.stringify(result.bootloader)}`,
        ].join('\n'),
      );
    return 0;
  } catch (err) {
    const r = printError(io, err);
    if (r.code === 'FLOTILLA_ERR_AGENT_USAGE') io.err(INIT_USAGE);
    return r.code === 'FLOTILLA_ERR_AGENT_USAGE' ? 2 : 1;
  }
}
