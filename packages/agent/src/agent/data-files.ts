import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson, type ReleaseManifest } from '@flotilla/protocol';
import { atomicWriteFile } from '../fs-util.js';
import type { Deployment } from '../state/record.js';

/**
 * The agent's files on the data partition: signed releases and offers (kept as received, so a
 * restart can verify them again) and the delta spool. The record stores paths relative to it.
 */
export class DataFiles {
  constructor(readonly dataDir: string) {}

  async storeRelease(envelope: unknown, manifest: ReleaseManifest): Promise<string> {
    return this.storeJson('releases', manifest.image.sha256, envelope);
  }

  async storeOffer(deploymentId: string, envelope: unknown): Promise<string> {
    return this.storeJson('offers', deploymentId, envelope);
  }

  private async storeJson(dir: string, key: string, value: unknown): Promise<string> {
    const name = createHash('sha256').update(key).digest('hex').slice(0, 32);
    const relativePath = `${dir}/${name}.json`;
    await mkdir(join(this.dataDir, dir), { recursive: true });
    await atomicWriteFile(join(this.dataDir, relativePath), JSON.stringify(value));
    return relativePath;
  }

  async loadRelease(relativePath: string): Promise<ReleaseManifest> {
    const envelope = parseJson(await readFile(join(this.dataDir, relativePath)));
    return (envelope as { signed: ReleaseManifest }).signed;
  }

  /** A stored signed document as received (release or offer envelope). */
  async loadEnvelope(relativePath: string): Promise<unknown> {
    return parseJson(await readFile(join(this.dataDir, relativePath)));
  }

  spoolPath(deployment: Deployment): string {
    return join(this.dataDir, `spool-${deployment.imageSha256.slice(0, 16)}.delta`);
  }
}
