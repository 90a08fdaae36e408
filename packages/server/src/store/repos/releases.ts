import type { ReleaseManifest, SignedRelease } from '@flotilla/protocol';
import type { Db } from '../db.js';

export type Channel = 'dev' | 'staging' | 'prod';
export const CHANNELS: readonly Channel[] = ['dev', 'staging', 'prod'];

export interface Release {
  id: string;
  name: string;
  version: string;
  kind: ReleaseManifest['kind'];
  securityVersion: number;
  compatible: string[];
  imageSha256: string;
  imageSize: number;
  sbomSha256: string | null;
  manifest: SignedRelease;
  channels: Channel[];
  created: number;
}

interface Row {
  id: string;
  name: string;
  version: string;
  kind: ReleaseManifest['kind'];
  security_version: number;
  compatible: string;
  image_sha256: string;
  image_size: number;
  sbom_sha256: string | null;
  manifest: string;
  created: number;
  channels: string | null;
}

const toRelease = (r: Row): Release => ({
  id: r.id,
  name: r.name,
  version: r.version,
  kind: r.kind,
  securityVersion: r.security_version,
  compatible: JSON.parse(r.compatible) as string[],
  imageSha256: r.image_sha256,
  imageSize: r.image_size,
  sbomSha256: r.sbom_sha256,
  manifest: JSON.parse(r.manifest) as SignedRelease,
  channels: r.channels ? (r.channels.split(',') as Channel[]) : [],
  created: r.created,
});

const SELECT = `SELECT r.*, (SELECT group_concat(channel) FROM channel_releases c WHERE c.release_id = r.id) AS channels FROM releases r`;

/** Versions are unique on a server (rollouts, device reports and rollbacks name a release by version). */
export function releaseId(version: string): string {
  return version;
}

/** Releases (immutable once stored) and their channel membership (dev → staging → prod). */
export class ReleasesRepo {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO releases (id, name, version, kind, security_version, compatible, image_sha256, image_size, sbom_sha256, manifest, created)
         VALUES (@id, @name, @version, @kind, @securityVersion, @compatible, @imageSha256, @imageSize, @sbomSha256, @manifest, @now)`,
      ),
      get: db.prepare<[string], Row>(`${SELECT} WHERE r.id = ?`),
      byImage: db.prepare<[string], Row>(
        `${SELECT} WHERE r.image_sha256 = ? ORDER BY r.created DESC LIMIT 1`,
      ),
      byVersion: db.prepare<[string], Row>(`${SELECT} WHERE r.version = ? ORDER BY r.created DESC LIMIT 1`),
      list: db.prepare<[], Row>(`${SELECT} ORDER BY r.created DESC`),
      promote: db.prepare(
        'INSERT INTO channel_releases (channel, release_id, promoted) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      channel: db.prepare<[string], Row & { promoted: number }>(
        `${SELECT} JOIN channel_releases cr ON cr.release_id = r.id WHERE cr.channel = ? ORDER BY cr.promoted DESC, r.created DESC`,
      ),
      del: db.prepare('DELETE FROM releases WHERE id = ?'),
      delChannels: db.prepare('DELETE FROM channel_releases WHERE release_id = ?'),
    };
  }

  insert(m: ReleaseManifest, envelope: SignedRelease, now: number): string {
    const id = releaseId(m.version);
    this.s.insert.run({
      id,
      name: m.name,
      version: m.version,
      kind: m.kind,
      securityVersion: m.securityVersion,
      compatible: JSON.stringify(m.compatible),
      imageSha256: m.image.sha256,
      imageSize: m.image.size,
      sbomSha256: m.sbom.sha256,
      manifest: JSON.stringify(envelope),
      now,
    });
    return id;
  }

  get(id: string): Release | undefined {
    const r = this.s.get.get(id);
    return r ? toRelease(r) : undefined;
  }

  byImage(sha256: string): Release | undefined {
    const r = this.s.byImage.get(sha256);
    return r ? toRelease(r) : undefined;
  }

  byVersion(version: string): Release | undefined {
    const r = this.s.byVersion.get(version);
    return r ? toRelease(r) : undefined;
  }

  list(channel?: Channel): Release[] {
    return (channel ? this.s.channel.all(channel) : this.s.list.all()).map(toRelease);
  }

  addToChannel(id: string, channel: Channel, now: number): void {
    this.s.promote.run(channel, id, now);
  }

  delete(id: string): void {
    this.s.delChannels.run(id);
    this.s.del.run(id);
  }
}
