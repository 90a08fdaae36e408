import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createAgentLauncher,
  defaultTransport,
  Fleet,
  isTerminalRollout,
  prepareWorld,
  startSimServer,
  watchRollout,
} from '@flotilla/fleet-simulator';
import {
  buildRoot,
  canonicalize,
  encodeKeyFile,
  generateKeyPair,
  isoAfter,
  type SignedRoot,
  signDocument,
  type TrustSet,
} from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';

/**
 * What `flotilla keys rotate` does offline, here on the TEST-ONLY keys of the world: root 2 with a
 * new root key and a new delta key, signed by the old and the new root key. The server imports
 * the directory (root.1.json, root.2.json, root.json = 2) and signs offers with the new delta
 * key, which root 1 — all a device ships with — does not know.
 */
async function rotateKeysDir(keysDir: string, trust: TrustSet): Promise<SignedRoot> {
  const now = new Date();
  const rootKey = generateKeyPair();
  const deltaKey = generateKeyPair();
  const meta = buildRoot({
    version: 2,
    expires: isoAfter(now, 365),
    roles: {
      root: { keys: [rootKey], threshold: 1 },
      release: { keys: trust.keys.release, threshold: 1 },
      delta: { keys: [deltaKey], threshold: 1 },
      recovery: { keys: trust.keys.recovery, threshold: 1 },
    },
  });
  const root2 = signDocument(meta, [...trust.keys.root, rootKey]);
  await writeFile(join(keysDir, 'root.1.json'), `${canonicalize(trust.root)}\n`);
  await writeFile(join(keysDir, 'root.2.json'), `${canonicalize(root2)}\n`);
  await writeFile(join(keysDir, 'root.json'), `${canonicalize(root2)}\n`);
  await writeFile(
    join(keysDir, 'delta-rotated.key'),
    encodeKeyFile(deltaKey, 'delta', 'TEST-ONLY rotated delta key'),
    {
      mode: 0o600,
    },
  );
  return root2;
}

describe('trust root chain', () => {
  it('a device whose root.json expired while it was offline updates after the server rotated the root (TUF: expiry only on the final root)', async () => {
    const base = await prepareWorld({
      size: 'light',
      server: async (x) => {
        await rotateKeysDir(x.keysDir, x.trust);
        return startSimServer({ ...x, rolloutTickMs: 250 });
      },
    });
    try {
      // The device's shipped root 1, expired yesterday: same keys, so root 2 chains onto it.
      const expiredRoot1 = signDocument(
        { ...base.trust.root.signed, expires: isoAfter(new Date(), -1) },
        base.trust.keys.root,
      );
      const fleet = await Fleet.create({
        dir: join(base.workDir, 'fleet'),
        count: 2,
        hardware: base.hardware,
        baseImage: base.firmware.releases.get('1.0.0')!.imagePath,
        format: base.firmware.format,
        slotSize: base.firmware.partitionSize,
        trustRoot: expiredRoot1,
        launcher: createAgentLauncher({
          factoryRelease: base.firmware.releases.get('1.0.0')!.manifestPath,
          transport: defaultTransport,
        }),
        mqtt: base.server.mqtt,
        artifactOrigin: base.server.artifactOrigin,
        timeScale: 0.05,
        register: (devices) => base.server.registerDevices(devices),
      });
      base.onClose(() => fleet.close());
      await fleet.powerOn();
      await fleet.waitFor('2 devices online', async () => (await base.server.onlineCount()) >= 2, 30_000);

      await base.publish('1.1.0');
      const id = await base.server.startRollout({
        name: 'after a root rotation',
        release: '1.1.0',
        phases: [{ name: 'all', percent: 100, errorThreshold: 50 }],
        maxConcurrent: 2,
        deviceTimeoutSeconds: 600,
        retries: { timedOut: 0 },
      });
      const view = await watchRollout(base.server, fleet, id, {
        until: isTerminalRollout,
        timeoutMs: 120_000,
      });
      expect(view.status).toBe('completed');
      expect(view.totals.healthy).toBe(2);
      expect(fleet.versions().get('1.1.0')).toBe(2);
      // Each device now trusts root 2 (kept atomically in its trust directory).
      for (const device of fleet.devices) {
        const file = join(base.workDir, 'fleet', 'devices', device.id, 'trust', 'root.json');
        expect((JSON.parse(await readFile(file, 'utf8')) as SignedRoot).signed.version).toBe(2);
      }
    } finally {
      await base.close();
    }
  }, 180_000);
});
