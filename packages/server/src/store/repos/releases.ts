import type { ReleaseManifest, SignedRelease } from '@flotilla/protocol';
import type { Sql } from '../sql.js';

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
  // In pipeline order: the aggregate's own order is the engine's (SQLite: by key, PostgreSQL: by row).
  channels: r.channels ? CHANNELS.filter((c) => r.channels!.split(',').includes(c)) : [],
  created: r.created,
});

/** A release with its channels as one comma-separated column (the aggregate is named differently per engine). */
function selectReleases(sql: Sql): string {
  const channels = sql.dialect === 'postgres' ? "string_agg(channel, ',')" : 'group_concat(channel)';
  return `SELECT r.*, (SELECT ${channels} FROM channel_releases c WHERE c.release_id = r.id) AS channels FROM releases r`;
}

/** Versions are unique on a server (rollouts, device reports and rollbacks name a release by version). */
export function releaseId(version: string): string {
  return version;
}

/** Releases (immutable once stored) and their channel membership (dev → staging → prod). */
export class ReleasesRepo {
  private readonly select: string;

  constructor(private readonly sql: Sql) {
    this.select = selectReleases(sql);
  }

  async insert(m: ReleaseManifest, envelope: SignedRelease, now: number): Promise<string> {
    const id = releaseId(m.version);
    await this.sql.run(
      `INSERT INTO releases (id, name, version, kind, security_version, compatible, image_sha256, image_size, sbom_sha256, manifest, created)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        id,
        m.name,
        m.version,
        m.kind,
        m.securityVersion,
        JSON.stringify(m.compatible),
        m.image.sha256,
        m.image.size,
        m.sbom.sha256,
        JSON.stringify(envelope),
        now,
      ],
    );
    return id;
  }

  private async one(where: string, arg: string): Promise<Release | undefined> {
    const r = await this.sql.get<Row>(`${this.select} ${where}`, [arg]);
    return r ? toRelease(r) : undefined;
  }

  get(id: string): Promise<Release | undefined> {
    return this.one('WHERE r.id = ?', id);
  }

  byImage(sha256: string): Promise<Release | undefined> {
    return this.one('WHERE r.image_sha256 = ? ORDER BY r.created DESC, r.id DESC LIMIT 1', sha256);
  }

  byVersion(version: string): Promise<Release | undefined> {
    return this.one('WHERE r.version = ? ORDER BY r.created DESC, r.id DESC LIMIT 1', version);
  }

  async list(channel?: Channel): Promise<Release[]> {
    const rows = channel
      ? await this.sql.all<Row>(
          `${this.select} JOIN channel_releases cr ON cr.release_id = r.id WHERE cr.channel = ? ORDER BY cr.promoted DESC, r.created DESC, r.id DESC`,
          [channel],
        )
      : await this.sql.all<Row>(`${this.select} ORDER BY r.created DESC, r.id DESC`);
    return rows.map(toRelease);
  }

  async addToChannel(id: string, channel: Channel, now: number): Promise<void> {
    await this.sql.run(
      'INSERT INTO channel_releases (channel, release_id, promoted) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      [channel, id, now],
    );
  }

  async delete(id: string): Promise<void> {
    await this.sql.run('DELETE FROM channel_releases WHERE release_id = ?', [id]);
    await this.sql.run('DELETE FROM releases WHERE id = ?', [id]);
  }
}
