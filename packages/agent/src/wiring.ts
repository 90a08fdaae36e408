import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig, AgentDeps } from './agent/deps.js';
import { CommandReboot } from './agent/reboot.js';
import { FileBootloader } from './bootloader/file-bootloader.js';
import { GrubBootloader } from './bootloader/grub.js';
import type { Bootloader } from './bootloader/types.js';
import { UbootBootloader } from './bootloader/uboot.js';
import { systemClock } from './clock.js';
import type { AgentConfigFile } from './config.js';
import { HttpFetcher } from './download/fetcher.js';
import { AgentError } from './errors.js';
import {
  CommandCheck,
  type HealthCheck,
  HttpProbeCheck,
  ServerReachableCheck,
  SystemdUnitCheck,
} from './health/checks.js';
import { DirHookRunner } from './hooks/hooks.js';
import { FlockUpdateLock, PidFileUpdateLock } from './hooks/update-lock.js';
import { type AgentLimitsOverride, resolveLimits } from './limits.js';
import type { Logger } from './logger.js';
import { FileOutbox } from './report/outbox.js';
import { FileSlotDevice, SlotSet } from './slots/slot-device.js';
import { FileStateStore } from './state/store.js';
import { mqttAuthFromConfig } from './transport/device-identity.js';
import { MqttTransport } from './transport/mqtt-transport.js';
import type { Transport } from './transport/types.js';
import { HttpRootSource } from './trust/root-source.js';
import { FileTrustStore } from './trust/trust-store.js';

export function bootloaderFromConfig(
  c: AgentConfigFile['bootloader'],
  slots?: AgentConfigFile['slots'],
): Bootloader {
  // the booted slot is the slot device backing `/`; the command line is only the hint
  const slotDevices = slots ? { slotDevices: { A: slots.A.path, B: slots.B.path } } : {};
  if (c.kind === 'uboot')
    return new UbootBootloader({
      configFile: c.fwEnvConfig,
      ...(c.cmdline ? { cmdlineFile: c.cmdline } : {}),
      ...slotDevices,
    });
  if (c.kind === 'grub')
    return new GrubBootloader({
      envFile: c.envFile,
      ...(c.bootlimit ? { bootlimit: c.bootlimit } : {}),
      ...(c.cmdline ? { cmdlineFile: c.cmdline } : {}),
      ...slotDevices,
    });
  return new FileBootloader(c.path);
}

/** A link that never connects: local installs queue their reports for the daemon to send. */
export const offlineTransport: Transport = {
  start: () => undefined,
  connected: () => false,
  publish: async () => {
    throw new AgentError('FLOTILLA_ERR_AGENT_OFFLINE', 'local install: reports wait for the daemon');
  },
  stop: async () => undefined,
};

/** Real implementations of every boundary, from the config file. */
export async function depsFromConfig(
  file: AgentConfigFile,
  opts: { logger: Logger; offline?: boolean },
): Promise<{ config: AgentConfig; deps: AgentDeps }> {
  const limits = resolveLimits((file.limits ?? {}) as AgentLimitsOverride);
  let transport: Transport = offlineTransport;
  if (file.server && !opts.offline) {
    const s = file.server;
    const auth = await mqttAuthFromConfig(file);
    transport = new MqttTransport({
      url: s.mqttUrl,
      deviceId: file.deviceId,
      auth,
      clock: systemClock,
      limits: limits.mqtt,
      logger: opts.logger,
      ...(s.caFile ? { ca: await readFile(s.caFile) } : {}),
    });
  }
  const bearer = file.server?.artifactTokenFile
    ? (await readFile(file.server.artifactTokenFile, 'utf8')).trim()
    : undefined;
  const ca = file.server?.caFile ? await readFile(file.server.caFile) : undefined;
  const health: HealthCheck[] = (file.health?.checks ?? []).map((c) =>
    c.kind === 'command'
      ? new CommandCheck(c.argv)
      : c.kind === 'systemd'
        ? new SystemdUnitCheck(c.unit)
        : c.kind === 'http'
          ? new HttpProbeCheck(c.url, c.status ?? 200)
          : new ServerReachableCheck(),
  );
  const config: AgentConfig = {
    deviceId: file.deviceId,
    hardware: file.hardware,
    dataDir: file.dataDir,
    ...(file.factoryReleaseFile ? { factoryReleaseFile: file.factoryReleaseFile } : {}),
    ...(file.deltaFallbackToFull !== undefined ? { deltaFallbackToFull: file.deltaFallbackToFull } : {}),
    ...(file.driftCheck !== undefined ? { driftCheck: file.driftCheck } : {}),
    ...(file.tags ? { tags: file.tags } : {}),
    ...(file.server?.stateIntervalMs !== undefined ? { stateIntervalMs: file.server.stateIntervalMs } : {}),
    limits: (file.limits ?? {}) as AgentLimitsOverride,
  };
  const fetcher = new HttpFetcher({ ...(ca ? { ca } : {}), ...(bearer ? { bearerToken: bearer } : {}) });
  const deps: AgentDeps = {
    store: new FileStateStore(join(file.dataDir, 'state.json')),
    bootloader: bootloaderFromConfig(file.bootloader, file.slots),
    slots: new SlotSet({
      A: new FileSlotDevice('A', file.slots.A.path, file.slots.A.size),
      B: new FileSlotDevice('B', file.slots.B.path, file.slots.B.size),
    }),
    transport,
    fetcher,
    clock: systemClock,
    reboot: new CommandReboot(file.reboot.command),
    trust: new FileTrustStore(file.trustDir),
    ...(file.server?.rootUrl && !opts.offline
      ? { rootSource: new HttpRootSource(file.server.rootUrl, fetcher, limits.trust) }
      : {}),
    outbox: new FileOutbox(join(file.dataDir, 'outbox'), limits.outbox),
    health,
    logger: opts.logger,
    ...(file.hooksDir ? { hooks: new DirHookRunner(file.hooksDir, limits.hooks) } : {}),
    ...(file.updateLock
      ? {
          updateLock:
            file.updateLock.kind === 'flock'
              ? new FlockUpdateLock(file.updateLock.path)
              : new PidFileUpdateLock(file.updateLock.path),
        }
      : {}),
  };
  return { config, deps };
}
