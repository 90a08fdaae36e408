import { createReadStream } from 'node:fs';
import { access, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AGENT_LIMITS,
  type AgentConfig,
  type Bootloader,
  createAgent,
  type Fetcher,
  FileBootloader,
  FileOutbox,
  FileStateStore,
  FileTrustStore,
  FunctionCheck,
  HttpFetcher,
  type Outbox,
  SlotSet,
  type StateStore,
  systemClock,
  type Transport,
} from '@flotilla/agent';
import { AgentKilled } from '@flotilla/agent/testing';
import { BUNDLE_PREFIX_BYTES, readBundleHeader } from '@flotilla/image';
import type { BundleHeader } from '@flotilla/protocol';
import { SimError } from './errors.js';
import type { AgentInstance, AgentLauncher, LaunchContext } from './ports.js';
import type { PowerGate } from './power.js';

/**
 * The one file that knows the agent's API: it builds a real agent (`createAgent`) for one boot of
 * one simulated device. Everything the agent touches goes through the device's power gate, so a
 * power cut stops it mid-flight with only fsync'ed data left behind.
 */
export type TransportFactory = (ctx: LaunchContext) => Transport & { kill?(): void };

export interface AgentWiringOptions {
  /** The signed release of the factory image (slot A at provisioning). */
  factoryRelease: string;
  transport: TransportFactory;
  limits?: AgentConfig['limits'];
}

/** Faster than production, still the same code paths: backoffs and deadlines in the sim's time. */
export function simLimits(scale: number): NonNullable<AgentConfig['limits']> {
  const ms = (v: number) => Math.max(10, Math.round(v * scale));
  return {
    download: {
      backoffBaseMs: ms(AGENT_LIMITS.download.backoffBaseMs),
      backoffMaxMs: ms(AGENT_LIMITS.download.backoffMaxMs),
      connectTimeoutMs: 15_000,
      idleTimeoutMs: 15_000,
    },
    health: { deadlineMs: ms(60_000), retryIntervalMs: ms(5000), checkTimeoutMs: 5000 },
    mqtt: {
      backoffBaseMs: ms(AGENT_LIMITS.mqtt.backoffBaseMs),
      backoffMaxMs: ms(AGENT_LIMITS.mqtt.backoffMaxMs),
    },
    hooks: { retryIntervalMs: ms(AGENT_LIMITS.hooks.retryIntervalMs) },
  };
}

export function createAgentLauncher(o: AgentWiringOptions): AgentLauncher {
  return async (ctx) => {
    const trustDir = join(ctx.dataDir, '..', 'trust');
    await ensureTrust(trustDir, ctx.trustRoot);
    const power = ctx.power;
    const hit = (point: string) => {
      if (!power.powered) throw new AgentKilled(`power cut (${point})`);
    };
    const transport = o.transport(ctx);
    const agent = createAgent(
      {
        deviceId: ctx.deviceId,
        hardware: ctx.hardware,
        dataDir: ctx.dataDir,
        factoryReleaseFile: o.factoryRelease,
        tags: ctx.tags,
        driftCheck: false,
        limits: { ...simLimits(ctx.timeScale), ...o.limits },
      },
      {
        store: observedStore(new FileStateStore(join(ctx.dataDir, 'state.json')), power, ctx),
        bootloader: guardedBootloader(new FileBootloader(ctx.bootloaderPath), power),
        slots: new SlotSet({ A: ctx.slots.A, B: ctx.slots.B }),
        transport,
        fetcher: simFetcher(new HttpFetcher(), ctx),
        clock: systemClock,
        reboot: { reboot: async () => ctx.reboot() },
        trust: new FileTrustStore(trustDir),
        outbox: guardedOutbox(new FileOutbox(join(ctx.dataDir, 'outbox'), AGENT_LIMITS.outbox), power),
        health: [
          new FunctionCheck('sim-behaviour', async () => {
            const h = await ctx.health();
            return h.ok ? { ok: true } : { ok: false, reason: h.reason ?? 'unhealthy' };
          }),
        ],
        faults: hit,
      },
    );
    await agent.start();
    const instance: AgentInstance = {
      stop: () => agent.stop(),
      crash: () => {
        transport.kill?.();
        void agent.stop().catch(() => undefined);
      },
      installLocal: async (bundlePath) => {
        const { header, imageOffset } = await locateImage(bundlePath);
        const image = header.sections.find((s) => s.name === 'image');
        await agent.installLocal({
          path: bundlePath,
          manifest: header.manifest,
          imageOffset,
          imageSize: image?.size ?? 0,
        });
      },
    };
    return instance;
  };
}

/** Where the image section of a `.flot` bundle starts (layout: image's bundle-format.ts). */
async function locateImage(path: string): Promise<{ header: BundleHeader; imageOffset: number }> {
  const fh = await open(path, 'r');
  let headerLength: number;
  try {
    const prefix = Buffer.alloc(BUNDLE_PREFIX_BYTES);
    await fh.read(prefix, 0, prefix.length, 0);
    headerLength = prefix.readUInt32BE(BUNDLE_PREFIX_BYTES - 4);
  } finally {
    await fh.close();
  }
  const header = await readBundleHeader(createReadStream(path));
  let offset = BUNDLE_PREFIX_BYTES + headerLength;
  for (const s of header.sections) {
    if (s.name === 'image') return { header, imageOffset: offset };
    offset += s.size;
  }
  throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `${path} has no image section`);
}

async function ensureTrust(dir: string, root: unknown): Promise<void> {
  const path = join(dir, 'root.json');
  try {
    await access(path);
  } catch {
    await mkdir(dir, { recursive: true });
    await writeFile(path, JSON.stringify(root));
  }
}

/** State saves are I/O of the device (fenced by the power gate) and tell the simulator the state. */
function observedStore(inner: StateStore, power: PowerGate, ctx: LaunchContext): StateStore {
  return {
    load: () => power.guard(() => inner.load()),
    save: async (record) => {
      await power.guard(() => inner.save(record));
      const deployment = record.deployment;
      ctx.onState(
        record.state,
        deployment
          ? {
              id: deployment.id,
              attempt: deployment.attempt,
              version: deployment.version,
              fullSize: deployment.full.size,
              method: deployment.method,
            }
          : null,
      );
    },
  };
}

function guardedBootloader(b: Bootloader, power: PowerGate): Bootloader {
  return {
    kind: b.kind,
    read: () => power.guard(() => b.read()),
    bootedSlot: () => power.guard(() => b.bootedSlot()),
    armTrial: (s, g) => power.guard(() => b.armTrial(s, g)),
    commit: (s, o) => power.guard(() => b.commit(s, o)),
    abortTrial: (g) => power.guard(() => b.abortTrial(g)),
  };
}

function guardedOutbox(o: Outbox, power: PowerGate): Outbox {
  return {
    add: (p) => power.guard(() => o.add(p)),
    list: () => power.guard(() => o.list()),
    remove: (id) => power.guard(() => o.remove(id)),
    takeDropped: () => o.takeDropped(),
  };
}

/** Artifact downloads: through the device's fault proxy when it has one, counted, power-fenced. */
function simFetcher(inner: Fetcher, ctx: LaunchContext): Fetcher {
  return {
    get: (url, opts) =>
      ctx.power.guard(async () => {
        const res = await inner.get(ctx.rewriteUrl(url), opts);
        const body = res.body;
        return {
          ...res,
          body: (async function* () {
            for await (const chunk of body) {
              if (!ctx.power.powered) {
                res.destroy();
                await new Promise<never>(() => {});
              }
              ctx.onBytes(chunk.length);
              yield chunk;
            }
          })(),
        };
      }),
  };
}
