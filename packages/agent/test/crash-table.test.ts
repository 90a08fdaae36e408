import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DataFiles } from '../src/agent/data-files.js';
import type { Deployment } from '../src/state/record.js';
import { PowerCut } from '../src/testing.js';
import { FAST_LIMITS, flipBits, makeDelta, makeImage, mutateImage, Rig, sha } from './helpers.js';

/**
 * Mender's biggest test, here: for every state, cut the power right after the agent persisted it
 * (the state's work had not finished), power on again, and assert the exact chain of states
 * (X = transition into X, ⚡ = power cut, ↻X = agent started in X, ⏻ = reboot it asked for), the
 * bootable committed slot, and what the server was told (events de-duplicated by eventId).
 */

let rig: Rig;
afterEach(async () => rig?.cleanup());

const HEALTHY_TOLD = ['offer-accepted', 'downloaded', 'installed', 'rebooting', 'healthy'];

interface Case {
  name: string;
  kind: 'healthy' | 'unhealthy' | 'tampered';
  at: string;
  chain: string[];
  told: string[];
  committed: 'A' | 'B';
}

const CASES: Case[] = [
  {
    name: 'no power cut (reference run)',
    kind: 'healthy',
    at: 'never',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'Killed_in_Offered',
    kind: 'healthy',
    at: 'persisted:Offered',
    chain: [
      'Offered',
      '⚡',
      '↻Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'Killed_in_Downloading',
    kind: 'healthy',
    at: 'persisted:Downloading',
    chain: [
      'Offered',
      'Downloading',
      '⚡',
      '↻Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'Killed_in_Installing',
    kind: 'healthy',
    at: 'persisted:Installing',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      '⚡',
      '↻Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'Killed_in_Installed (before the trial was armed)',
    kind: 'healthy',
    at: 'persisted:Installed',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      '⚡',
      '↻Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    // The trial was armed, so the power cut itself boots the new slot: no reboot is asked for.
    name: 'Killed_in_Rebooting (trial armed, reboot not yet asked)',
    kind: 'healthy',
    at: 'persisted:Rebooting',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⚡',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
    told: ['offer-accepted', 'downloaded', 'installed', 'healthy'],
    committed: 'B',
  },
  {
    name: 'Killed_in_Verifying (the trial boots the new slot again)',
    kind: 'healthy',
    at: 'persisted:Verifying',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      '⚡',
      '↻Verifying',
      'Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'Killed_in_Committed',
    kind: 'healthy',
    at: 'persisted:Committed',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      '⚡',
      '↻Committed',
      'Idle',
    ],
    told: HEALTHY_TOLD,
    committed: 'B',
  },
  {
    name: 'unhealthy release, no power cut (reference run)',
    kind: 'unhealthy',
    at: 'never',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'RollingBack',
      '⏻',
      '↻RollingBack',
      'RolledBack',
      'Idle',
    ],
    told: [
      'offer-accepted',
      'downloaded',
      'installed',
      'rebooting',
      'rolled-back:FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED',
    ],
    committed: 'A',
  },
  {
    // Still on the bad slot with the trial armed: the power cut boots it again, the rollback re-runs.
    name: 'Killed_in_RollingBack',
    kind: 'unhealthy',
    at: 'persisted:RollingBack',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'RollingBack',
      '⚡',
      '↻RollingBack',
      '⏻',
      '↻RollingBack',
      'RolledBack',
      'Idle',
    ],
    told: [
      'offer-accepted',
      'downloaded',
      'installed',
      'rebooting',
      'rolled-back:FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED',
    ],
    committed: 'A',
  },
  {
    name: 'Killed_in_RolledBack',
    kind: 'unhealthy',
    at: 'persisted:RolledBack',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'RollingBack',
      '⏻',
      '↻RollingBack',
      'RolledBack',
      '⚡',
      '↻RolledBack',
      'Idle',
    ],
    told: [
      'offer-accepted',
      'downloaded',
      'installed',
      'rebooting',
      'rolled-back:FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED',
    ],
    committed: 'A',
  },
  {
    name: 'Killed_in_Failed (tampered chunk)',
    kind: 'tampered',
    at: 'persisted:Failed',
    chain: ['Offered', 'Downloading', 'Failed', '⚡', '↻Failed', 'Idle'],
    told: ['offer-accepted', 'failed:FLOTILLA_ERR_AGENT_CHUNK_HASH_MISMATCH'],
    committed: 'A',
  },
];

describe('crash table: power cut in every state', () => {
  for (const c of CASES) {
    it(`${c.name}: resumes or rolls back, ends committed on ${c.committed}, tells the server`, async () => {
      rig = await Rig.create();
      const next = mutateImage(rig.factory, 7);
      const cmd = rig.offer(next, { version: '1.1.0' });
      if (c.kind === 'unhealthy')
        rig.healthy = (slot) => (slot === 'B' ? 'app.service failed: exit code 3' : true);
      if (c.kind === 'tampered') {
        const bad = Buffer.from(next);
        flipBits(bad, 5000, 0xff);
        rig.fetcher.put(
          `mem://artifacts/${(cmd.offer as { signed: { full: { sha256: string } } }).signed.full.sha256}`,
          bad,
        );
      }
      await rig.powerOn({ cut: c.at === 'never' ? undefined : new PowerCut({ atPoint: c.at }) });
      rig.send(cmd);
      await rig.runToRest();
      await rig.agent!.flushReports();

      expect(rig.chain).toEqual(c.chain);
      expect(rig.told()).toEqual(c.told);
      const boot = await rig.dev.bootloader.read();
      expect(boot).toMatchObject({ primary: c.committed, good: c.committed, trial: false });
      expect(rig.agent!.record.committedSlot).toBe(c.committed);
      expect(await rig.dev.bootloader.bootedSlot()).toBe(c.committed);
      // The committed slot holds exactly its image; the factory slot A was never written.
      const want = c.committed === 'B' ? next : rig.factory;
      expect((await rig.slotBytes(c.committed, want.length)).equals(want)).toBe(true);
      expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
    });
  }

  it('a slot write cut mid-chunk resumes from the last checkpoint with a Range request', async () => {
    rig = await Rig.create({
      config: {
        limits: {
          checkpointBytes: 8192,
          download: {
            maxRetries: 3,
            maxAttempts: 10,
            backoffBaseMs: 1,
            backoffMaxMs: 2,
            connectTimeoutMs: 5000,
            idleTimeoutMs: 5000,
            minBytesPerSecond: 1,
            rateWindowMs: 60_000,
            progressEveryMs: 0,
          },
        },
      },
    });
    const next = mutateImage(rig.factory, 9);
    const cmd = rig.offer(next, { version: '1.1.0' });
    // Chunks are 4 KiB: the 9th write is torn in half by the power cut, after 4 checkpoints.
    await rig.powerOn({ cut: new PowerCut({ atPoint: 'io:slot-write', atPointOccurrence: 9 }) });
    rig.send(cmd);
    await rig.runToRest();
    expect(rig.chain.slice(0, 4)).toEqual(['Offered', 'Downloading', '⚡', '↻Downloading']);
    expect(rig.chain.at(-1)).toBe('Idle');
    const fullUrl = `mem://artifacts/${(cmd.offer as { signed: { full: { sha256: string } } }).signed.full.sha256}`;
    const starts = rig.fetcher.requests.filter((r) => r.url === fullUrl).map((r) => r.start);
    expect(starts).toEqual([0, 8 * 4096]);
    expect((await rig.slotBytes('B', next.length)).equals(next)).toBe(true);
    expect(rig.agent!.record.committedSlot).toBe('B');
  });

  it('the bootloader falls back by itself when the new slot never runs the agent', async () => {
    rig = await Rig.create({ bootlimit: 3 });
    const next = makeImage(99, rig.factory.length);
    await rig.powerOn();
    rig.agentStartsOn.B = false;
    rig.send(rig.offer(next, { version: '1.1.0' }));
    await rig.runToRest(); // ⏻ then slot B "hangs": runToRest keeps powering on until A boots again
    expect(rig.chain).toEqual([
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'RolledBack',
      'Idle',
    ]);
    await rig.agent!.flushReports();
    expect(rig.told()).toEqual([
      'offer-accepted',
      'downloaded',
      'installed',
      'rebooting',
      'rolled-back:FLOTILLA_ERR_AGENT_BOOT_FALLBACK',
    ]);
    const env = await rig.dev.bootloader.env();
    expect(env).toMatchObject({ flotilla_slot: 'A', upgrade_available: 0, bootcount: 4, bootlimit: 3 });
  });
});

/**
 * The same for a delta update, with the cut inside the apply (base = slot A read-only, output
 * chunk-verified into slot B, 16 chunks of 4 KiB). The apply restarts from its first byte after
 * the cut: the spool and the base are untouched by it, and nothing written before the cut counts
 * until the whole-image hash. The spool is downloaded once and dropped only after Installed.
 */
const DELTA_CHAIN_RESUMED_IN_INSTALLING = [
  'Offered',
  'Downloading',
  'Installing',
  '⚡',
  '↻Installing',
  'Installed',
  'Rebooting',
  '⏻',
  '↻Rebooting',
  'Verifying',
  'Committed',
  'Idle',
];

const DELTA_CASES: { name: string; at: string; occurrence?: number; chain: string[] }[] = [
  {
    name: 'Killed_in_Installing before the first byte',
    at: 'persisted:Installing',
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed mid-apply: first chunk torn',
    at: 'io:slot-write',
    occurrence: 1,
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed mid-apply: 8th of 16 chunks torn',
    at: 'io:slot-write',
    occurrence: 8,
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed mid-apply: last chunk torn',
    at: 'io:slot-write',
    occurrence: 16,
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed after the apply, before the slot was synced',
    at: 'io:slot-sync',
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed after the image hash verified, before Installed was persisted',
    at: 'finished:Installing',
    chain: DELTA_CHAIN_RESUMED_IN_INSTALLING,
  },
  {
    name: 'Killed_in_Installed (spool not yet dropped)',
    at: 'persisted:Installed',
    chain: [
      'Offered',
      'Downloading',
      'Installing',
      'Installed',
      '⚡',
      '↻Installed',
      'Rebooting',
      '⏻',
      '↻Rebooting',
      'Verifying',
      'Committed',
      'Idle',
    ],
  },
];

describe('crash table: power cut while applying a delta', () => {
  it('a delta download cut mid-write (tail lost) resumes from the last durable spool checkpoint', async () => {
    rig = await Rig.create({
      imageSize: 256 * 1024,
      config: { limits: { ...FAST_LIMITS, checkpointBytes: 64 * 1024 } },
    });
    const next = makeImage(77, rig.factory.length); // unrelated content: the delta is about as big
    const delta = await makeDelta(rig.factory, next);
    expect(delta.length).toBeGreaterThan(4 * 64 * 1024);
    const cmd = rig.offer(next, {
      version: '1.1.0',
      delta: { bytes: delta, from: rig.factory, fromVersion: '1.0.0' },
    });
    // 64 KiB pieces, a checkpoint after each: the 3rd write is cut, half of it left as zeros.
    await rig.powerOn({ cut: new PowerCut({ atPoint: 'io:spool-write', atPointOccurrence: 3 }) });
    rig.send(cmd);
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.chain.slice(0, 4)).toEqual(['Offered', 'Downloading', '⚡', '↻Downloading']);
    expect(rig.told()).toEqual(HEALTHY_TOLD);
    expect(rig.fetcher.requests.map((r) => `${r.url}@${r.start}`)).toEqual([
      `mem://artifacts/${sha(delta)}@0`,
      `mem://artifacts/${sha(delta)}@${2 * 64 * 1024}`,
    ]);
    expect(rig.agent!.record.committedSlot).toBe('B');
    expect((await rig.slotBytes('B', next.length)).equals(next)).toBe(true);
  });

  for (const c of DELTA_CASES) {
    it(`${c.name}: the apply restarts from scratch from the kept spool, ends committed on B, tells the server`, async () => {
      rig = await Rig.create();
      const next = mutateImage(rig.factory, 11);
      const delta = await makeDelta(rig.factory, next);
      const cmd = rig.offer(next, {
        version: '1.1.0',
        delta: { bytes: delta, from: rig.factory, fromVersion: '1.0.0' },
      });
      await rig.powerOn({ cut: new PowerCut({ atPoint: c.at, atPointOccurrence: c.occurrence ?? 1 }) });
      rig.send(cmd);
      await rig.runToRest();
      await rig.agent!.flushReports();

      expect(rig.chain).toEqual(c.chain);
      expect(rig.told()).toEqual(HEALTHY_TOLD);
      const downloaded = rig.hub.events('dev-1').find((e) => e.kind === 'downloaded');
      expect(downloaded?.detail).toMatchObject({ method: 'delta' });
      // The delta was fetched once (the spool survived the cut); the full image never.
      expect(rig.fetcher.requests.map((r) => `${r.url}@${r.start}`)).toEqual([
        `mem://artifacts/${sha(delta)}@0`,
      ]);
      const spool = new DataFiles(rig.config.dataDir).spoolPath({ imageSha256: sha(next) } as Deployment);
      expect(existsSync(spool)).toBe(false);
      expect(await rig.dev.bootloader.read()).toMatchObject({ primary: 'B', good: 'B', trial: false });
      expect(rig.agent!.record.committedSlot).toBe('B');
      expect(await rig.dev.bootloader.bootedSlot()).toBe('B');
      expect((await rig.slotBytes('B', next.length)).equals(next)).toBe(true);
      expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);
    });
  }
});
