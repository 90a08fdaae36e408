import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { VulnsError } from './errors.js';
import { recordSeverity, type Severity } from './severity.js';
import type { PackageFamily } from './versions.js';

/**
 * The part of the OSV schema (https://ossf.github.io/osv-schema/) matching relies on, checked
 * field by field; other fields are allowed (the format grows) and kept out of the store.
 */
const Event = Type.Union([
  Type.Object({ introduced: Type.String({ minLength: 1, maxLength: 256 }) }),
  Type.Object({ fixed: Type.String({ minLength: 1, maxLength: 256 }) }),
  Type.Object({ last_affected: Type.String({ minLength: 1, maxLength: 256 }) }),
  Type.Object({ limit: Type.String({ minLength: 1, maxLength: 256 }) }),
]);

const OsvSchema = Type.Object({
  schema_version: Type.Optional(Type.String({ maxLength: 32 })),
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' }),
  modified: Type.String({ minLength: 10, maxLength: 64 }),
  published: Type.Optional(Type.String({ maxLength: 64 })),
  withdrawn: Type.Optional(Type.String({ maxLength: 64 })),
  aliases: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { maxItems: 256 })),
  summary: Type.Optional(Type.String({ maxLength: 4096 })),
  severity: Type.Optional(
    Type.Array(
      Type.Object({ type: Type.String({ maxLength: 32 }), score: Type.String({ maxLength: 256 }) }),
      {
        maxItems: 16,
      },
    ),
  ),
  affected: Type.Optional(
    Type.Array(
      Type.Object({
        package: Type.Object({
          ecosystem: Type.String({ minLength: 1, maxLength: 128 }),
          name: Type.String({ minLength: 1, maxLength: 256 }),
        }),
        ranges: Type.Optional(
          Type.Array(
            Type.Object({
              type: Type.Union([Type.Literal('ECOSYSTEM'), Type.Literal('SEMVER'), Type.Literal('GIT')]),
              events: Type.Array(Event, { minItems: 1, maxItems: 1024 }),
            }),
            { maxItems: 256 },
          ),
        ),
        versions: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 100_000 })),
        severity: Type.Optional(
          Type.Array(Type.Object({ type: Type.String(), score: Type.String({ maxLength: 256 }) }), {
            maxItems: 16,
          }),
        ),
      }),
      { maxItems: 4096 },
    ),
  ),
});
export type OsvRecord = Static<typeof OsvSchema>;

export type RangeEvent = { introduced: string } | { fixed: string } | { last_affected: string };

/** One affected package of a record, in the terms the matcher uses. */
export interface AffectedPackage {
  family: PackageFamily;
  /** The feed's ecosystem as written, e.g. `Debian:12`. */
  ecosystem: string;
  /** Distribution for deb (`debian`, `ubuntu`), null otherwise. */
  distro: string | null;
  /** Distribution release the entry is for (`12`), null when the ecosystem names none. */
  release: string | null;
  name: string;
  /** ECOSYSTEM / SEMVER ranges (GIT ranges name commits, not package versions, and are dropped). */
  ranges: RangeEvent[][];
  versions: string[];
}

/** A record as stored: what matching and listing need. */
export interface VulnRecord {
  id: string;
  modified: number;
  withdrawn: boolean;
  aliases: string[];
  summary: string | null;
  severity: Severity;
  score: number | null;
  affected: AffectedPackage[];
}

/** Which OSV ecosystems map onto which SBOM package family (deb compares with dpkg's rules). */
export function ecosystemFamily(
  ecosystem: string,
): { family: PackageFamily; distro: string | null; release: string | null } | null {
  const [base, ...rest] = ecosystem.split(':');
  if (base === 'Debian') return { family: 'deb', distro: 'debian', release: rest[0] ?? null };
  if (base === 'Ubuntu') {
    // "Ubuntu:22.04:LTS", "Ubuntu:Pro:18.04:LTS": the release is the dotted number.
    return { family: 'deb', distro: 'ubuntu', release: rest.find((p) => /^\d+\.\d+$/.test(p)) ?? null };
  }
  if (ecosystem === 'npm') return { family: 'npm', distro: null, release: null };
  return null;
}

export interface ParseOptions {
  /** Drop affected entries of unknown ecosystems (counted as skipped) instead of refusing the import. */
  skipUnknownEcosystems: boolean;
}

const timeField = (file: string, field: string, value: string | undefined): number | null => {
  if (value === undefined) return null;
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(t))
    throw new VulnsError(
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      `${file}: field ${field}: not an RFC 3339 time`,
    );
  return t;
};

/** Parses and checks one OSV JSON file; errors name the file and the field. */
export function parseOsvRecord(
  file: string,
  bytes: Uint8Array,
  opts: ParseOptions,
): { record: VulnRecord; skipped: number } {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new VulnsError(
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      `${file}: not JSON (${(err as Error).message})`,
    );
  }
  if (!Value.Check(OsvSchema, doc)) {
    const first = Value.Errors(OsvSchema, doc).First();
    throw new VulnsError(
      'FLOTILLA_ERR_VULNS_IMPORT_INVALID',
      `${file}: field ${first?.path || '/'}: ${first?.message ?? 'invalid'}`,
    );
  }
  const osv = doc;
  const modified = timeField(file, '/modified', osv.modified)!;
  const withdrawn = timeField(file, '/withdrawn', osv.withdrawn);
  const recordLevel = recordSeverity(osv as Parameters<typeof recordSeverity>[0]);
  let skipped = 0;
  const affected: AffectedPackage[] = [];
  let severity = recordLevel;
  for (const [i, a] of (osv.affected ?? []).entries()) {
    const fam = ecosystemFamily(a.package.ecosystem);
    if (!fam) {
      if (opts.skipUnknownEcosystems) {
        skipped++;
        continue;
      }
      throw new VulnsError(
        'FLOTILLA_ERR_VULNS_UNKNOWN_ECOSYSTEM',
        `${file}: field /affected/${i}/package/ecosystem: '${a.package.ecosystem}'`,
      );
    }
    // A per-package severity (some feeds put it there) counts when the record has none.
    if (severity.severity === 'unknown' && a.severity) severity = recordSeverity({ severity: a.severity });
    const ranges = (a.ranges ?? [])
      .filter((r) => r.type !== 'GIT')
      .map((r) => r.events.filter((e): e is RangeEvent => !('limit' in e)));
    affected.push({
      ...fam,
      ecosystem: a.package.ecosystem,
      name: a.package.name,
      ranges,
      versions: a.versions ?? [],
    });
  }
  return {
    record: {
      id: osv.id,
      modified,
      withdrawn: withdrawn !== null,
      aliases: osv.aliases ?? [],
      summary: osv.summary ?? null,
      severity: severity.severity,
      score: severity.score,
      affected,
    },
    skipped,
  };
}
