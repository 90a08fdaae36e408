import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Command } from 'commander';
import { zipSync } from 'fflate';
import { addServerOptions, clientFor, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { count, printResult } from '../output.js';
import { countArg } from '../time-arg.js';

const SEVERITIES = ['critical', 'high', 'medium', 'low', 'unknown'];
const MAX_PAGE = 1000;

interface RecordRow {
  id: string;
  severity: string;
  score: number | null;
  modified: string;
  withdrawn: boolean;
  packages: { ecosystem: string; name: string }[];
  summary: string | null;
}

/** A record's distinct values of one package field, comma-joined for a table cell. */
const cell = (r: RecordRow, field: 'ecosystem' | 'name') =>
  [...new Set(r.packages.map((p) => p[field]))].join(',');

/** Most files a directory import zips up (osv.dev's Debian dump holds some tens of thousands). */
const MAX_DIR_FILES = 500_000;

/**
 * The archive to upload: a `.zip` as it is (osv.dev's per-ecosystem `all.zip`), or the `.json`
 * files of a directory (recursively) or a single `.json` file, zipped here. The server checks
 * every record; the CLI only packs.
 */
async function osvArchive(path: string): Promise<Uint8Array> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${path}: ${err.code ?? err.message}`, { cause: err });
  });
  if (st.isFile() && path.toLowerCase().endsWith('.zip')) return readFile(path);
  const files: Record<string, Uint8Array> = {};
  if (st.isFile()) files[path.split('/').pop()!] = await readFile(path);
  else if (st.isDirectory()) {
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && e.name.toLowerCase().endsWith('.json')) {
          if (Object.keys(files).length >= MAX_DIR_FILES)
            throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${path}: more than ${MAX_DIR_FILES} .json files`);
          files[relative(path, full)] = await readFile(full);
        }
      }
    };
    await walk(path);
  }
  if (Object.keys(files).length === 0)
    throw new CliError(
      'FLOTILLA_ERR_CLI_INPUT',
      `${path}: no .json OSV records (give a directory, a .json or a .zip)`,
    );
  return zipSync(files, { level: 6 });
}

/** `flotilla vulns import|status|list|show`: offline vulnerability data (OSV) on the server. */
export function registerVulnsCommands(program: Command): void {
  addServerOptions(program);
  const vulns = program.command('vulns').description('vulnerability data (OSV records) on the server');

  vulns
    .command('import')
    .description('import OSV records: a directory of .json files, one .json, or a .zip (all or nothing)')
    .argument('<path>', 'directory, .json or .zip')
    .option(
      '--skip-unknown-ecosystems',
      'record entries of ecosystems Flotilla cannot match as skipped instead of refusing the import',
    )
    .option('--json', 'print JSON')
    .action(async (path: string, o: { skipUnknownEcosystems?: boolean }, cmd: Command) => {
      const zip = await osvArchive(path);
      const q = o.skipUnknownEcosystems ? '?skipUnknownEcosystems=true' : '';
      const r = await clientFor(cmd).request<Record<string, unknown>>(
        'POST',
        `vulnerabilities/import${q}`,
        undefined,
        {
          size: zip.length,
          contentType: 'application/zip',
          stream: () => new Blob([new Uint8Array(zip)]).stream(),
        },
      );
      printResult(
        wantsJson(cmd),
        { ok: true, import: r },
        () =>
          `imported ${count(Number(r.files), 'file')}: ${r.added} new, ${r.replaced} replaced, ${r.unchanged} unchanged, ${r.skipped} skipped; ${count(Number(r.rescanned), 'release')} re-scanned`,
      );
    });

  vulns
    .command('status')
    .description('what vulnerability data is loaded and how old it is')
    .option('--json', 'print JSON')
    .action(async (_o: unknown, cmd: Command) => {
      const s = await clientFor(cmd).request<{
        records: number;
        withdrawn: number;
        bySeverity: Record<string, number>;
        newestModified: number | null;
        lastImport: { ts: number; ecosystems: string[]; actor: string } | null;
        ageMs: number | null;
      }>('GET', 'vulnerabilities/status');
      printResult(wantsJson(cmd), { ok: true, status: s }, () =>
        s.lastImport
          ? [
              `${s.records} records (${s.withdrawn} withdrawn); ${Object.entries(s.bySeverity)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')}`,
              `last import ${when(s.lastImport.ts)} by ${s.lastImport.actor} (${Math.floor((s.ageMs ?? 0) / 3_600_000)} h ago): ${s.lastImport.ecosystems.join(', ') || '–'}`,
              `newest record modified ${s.newestModified ? when(s.newestModified) : '–'}`,
            ].join('\n')
          : 'no vulnerability data loaded: import OSV records with `flotilla vulns import PATH`',
      );
    });

  registerRecordCommands(vulns);
}

interface StoredRecord {
  id: string;
  modified: string;
  withdrawn: boolean;
  aliases: string[];
  summary: string | null;
  severity: string;
  score: number | null;
  affected: { ecosystem: string; name: string; ranges: Record<string, string>[][]; versions: string[] }[];
}

/** A range's events as `introduced 0, fixed 3.0.13`. */
const events = (range: Record<string, string>[]) =>
  range.flatMap((e) => Object.entries(e).map(([k, v]) => `${k} ${v}`)).join(', ');

function renderRecord(r: StoredRecord): string {
  return [
    `${r.id}${r.withdrawn ? ' (withdrawn)' : ''}: ${r.severity}${r.score === null ? '' : ` (${r.score})`}`,
    `  modified: ${when(r.modified)}`,
    `  aliases: ${r.aliases.join(', ') || '–'}`,
    `  summary: ${r.summary ?? '–'}`,
    ...r.affected.flatMap((a) => [
      `  affects ${a.ecosystem} ${a.name}`,
      ...a.ranges.map((range) => `    ${events(range)}`),
      ...(a.versions.length > 0 ? [`    versions: ${a.versions.join(', ')}`] : []),
    ]),
  ].join('\n');
}

/** `flotilla vulns list|show`: the loaded records, as the server stores them. */
function registerRecordCommands(vulns: Command): void {
  vulns
    .command('list')
    .description('list the loaded OSV records (id, severity, ecosystem, package, modified)')
    .option('--package <name>', 'only records affecting a package of this name (any ecosystem)')
    .option('--severity <level>', `only records of this severity: ${SEVERITIES.join(', ')}`)
    .option('--limit <n>', `at most this many (1–${MAX_PAGE})`, '100')
    .option('--offset <n>', 'skip this many (the next page)')
    .option(
      '--json',
      'print JSON: {"ok","total","records":[{id,severity,score,modified,withdrawn,packages:[{ecosystem,name}],summary}]}',
    )
    .action(
      async (o: { package?: string; severity?: string; limit: string; offset?: string }, cmd: Command) => {
        if (o.severity !== undefined && !SEVERITIES.includes(o.severity))
          throw new CliError(
            'FLOTILLA_ERR_CLI_USAGE',
            `--severity ${o.severity} (one of ${SEVERITIES.join(', ')})`,
          );
        const q = new URLSearchParams({ limit: String(countArg('--limit', o.limit, MAX_PAGE)) });
        if (o.offset !== undefined) q.set('offset', String(countArg('--offset', o.offset, 1_000_000_000)));
        if (o.package !== undefined) q.set('package', o.package);
        if (o.severity !== undefined) q.set('severity', o.severity);
        const r = await clientFor(cmd).request<{ items: RecordRow[]; total: number }>(
          'GET',
          `vulnerabilities?${q}`,
        );
        printResult(wantsJson(cmd), { ok: true, total: r.total, records: r.items }, () =>
          r.items.length === 0
            ? r.total === 0
              ? 'no records match (import OSV records with `flotilla vulns import PATH`)'
              : `no records on this page (${count(r.total, 'record')} match)`
            : [
                table(
                  ['ID', 'SEVERITY', 'ECOSYSTEM', 'PACKAGE', 'MODIFIED'],
                  r.items.map((v) => [
                    v.id,
                    v.withdrawn ? `${v.severity} (withdrawn)` : v.severity,
                    cell(v, 'ecosystem'),
                    cell(v, 'name'),
                    when(v.modified),
                  ]),
                ),
                ...(r.items.length < r.total
                  ? [`${r.items.length} of ${r.total} shown (--limit, --offset)`]
                  : []),
              ].join('\n'),
        );
      },
    );

  vulns
    .command('show')
    .description('show one loaded OSV record as stored (the fields matching uses)')
    .argument('<id>', 'record id, e.g. DSA-5001-1 or GHSA-xxxx-xxxx-xxxx')
    .option(
      '--json',
      'print JSON: {"ok","record":{id,modified,withdrawn,aliases,summary,severity,score,affected}}',
    )
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const record = await clientFor(cmd).request<StoredRecord>(
        'GET',
        `vulnerabilities/${encodeURIComponent(id)}`,
      );
      printResult(wantsJson(cmd), { ok: true, record }, () => renderRecord(record));
    });
}

export interface VulnerabilityRow {
  id: string;
  aliases: string[];
  package: string;
  installed: string;
  fixed: string | null;
  severity: string;
}

/** `flotilla release vulns VERSION`: the release's findings. `--json` prints exactly the documented shape. */
export async function printReleaseVulns(version: string, cmd: Command): Promise<void> {
  const r = await clientFor(cmd).request<{ version: string; vulnerabilities: VulnerabilityRow[] }>(
    'GET',
    `releases/${encodeURIComponent(version)}/vulnerabilities`,
  );
  const vulnerabilities = r.vulnerabilities.map((v) => ({
    id: v.id,
    aliases: v.aliases,
    package: v.package,
    installed: v.installed,
    fixed: v.fixed,
    severity: v.severity,
  }));
  printResult(wantsJson(cmd), { version: r.version, vulnerabilities }, () =>
    vulnerabilities.length === 0
      ? `release ${r.version}: no known vulnerabilities`
      : table(
          ['SEVERITY', 'ID', 'PACKAGE', 'INSTALLED', 'FIXED', 'ALIASES'],
          vulnerabilities.map((v) => [
            v.severity,
            v.id,
            v.package,
            v.installed,
            v.fixed ?? '–',
            v.aliases.join(','),
          ]),
        ),
  );
}
