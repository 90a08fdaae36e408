import { lstat, readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalize } from '@flotilla/protocol';
import { IMAGE_LIMITS } from './limits.js';
import type { StagedTree, TreeEntry } from './tree.js';
import { uuidFromName } from './units.js';

/**
 * A CycloneDX 1.5 JSON SBOM of a rootfs: the packages its package databases list (dpkg
 * status, opkg status, npm `node_modules/**\/package.json` and package-lock.json files) and
 * every regular file with its sha256. Built only from the staged tree and fixed inputs, so
 * the same tree gives the same bytes (timestamp = source date epoch).
 */

export interface SbomPackage {
  ecosystem: 'deb' | 'opkg' | 'npm';
  name: string;
  version: string;
  arch?: string;
  purl: string;
  /** Where in the rootfs the package was found. */
  source: string;
  /**
   * dpkg/opkg `Source:` field: the source package a binary was built from (Debian's security
   * feeds name source packages) and its version when it differs from the binary's (binNMUs).
   */
  sourceName?: string;
  sourceVersion?: string;
  /** The rootfs's os-release `ID-VERSION_ID` (e.g. `debian-12`), for deb and opkg packages. */
  distro?: string;
  /** npm lockfile integrity, as CycloneDX hashes. */
  hashes?: { alg: string; content: string }[];
}

export interface SbomSubject {
  name: string;
  version: string;
  imageSha256: string;
  epoch: number;
}

export const TOOL_VERSION = '0.1.0';

export async function scanPackages(tree: StagedTree): Promise<SbomPackage[]> {
  const found = new Map<string, SbomPackage>();
  const add = (p: SbomPackage) => {
    if (!found.has(p.purl)) found.set(p.purl, p);
  };
  const distro = await osReleaseId(tree.dir);
  const distroVersion = await osReleaseVersion(tree.dir);
  for (const dbPath of ['/var/lib/dpkg/status']) {
    const text = await readSmall(tree.dir, dbPath);
    if (text) for (const p of parseControlDb(text, 'deb', dbPath, distro, distroVersion)) add(p);
  }
  for (const dbPath of ['/var/lib/opkg/status', '/usr/lib/opkg/status']) {
    const text = await readSmall(tree.dir, dbPath);
    if (text) for (const p of parseControlDb(text, 'opkg', dbPath, distro, distroVersion)) add(p);
  }
  for (const e of tree.entries) {
    if (e.type !== 'file') continue;
    if (/\/node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/.test(e.path)) {
      const pkg = parseJsonSafe(await readSmall(tree.dir, e.path));
      if (pkg && typeof pkg.name === 'string' && typeof pkg.version === 'string')
        add(npmPackage(pkg.name, pkg.version, e.path));
    } else if (/\/package-lock\.json$/.test(e.path) || /\/node_modules\/\.package-lock\.json$/.test(e.path)) {
      const lock = parseJsonSafe(await readSmall(tree.dir, e.path));
      const pkgs = lock?.packages;
      if (pkgs && typeof pkgs === 'object') {
        for (const [key, v] of Object.entries(pkgs as Record<string, unknown>)) {
          const info = v as { version?: unknown; integrity?: unknown; name?: unknown };
          const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(key);
          if (!m || typeof info?.version !== 'string') continue;
          const p = npmPackage(typeof info.name === 'string' ? info.name : m[1]!, info.version, e.path);
          const hashes = integrityHashes(info.integrity);
          if (hashes.length) p.hashes = hashes;
          const prior = found.get(p.purl);
          if (prior && !prior.hashes && p.hashes) prior.hashes = p.hashes;
          add(p);
        }
      }
    }
  }
  return [...found.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
}

/** dpkg and opkg share the Debian control-file format: paragraphs of `Field: value`. */
export function parseControlDb(
  text: string,
  ecosystem: 'deb' | 'opkg',
  source: string,
  distro: string,
  distroVersion: string | null = null,
): SbomPackage[] {
  const out: SbomPackage[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const fields: Record<string, string> = {};
    let last = '';
    for (const line of para.split('\n')) {
      if (/^\s/.test(line) && last) continue; // continuation lines (descriptions)
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = m[1]!.toLowerCase();
        fields[last] = m[2]!.trim();
      }
    }
    const name = fields.package;
    const version = fields.version;
    if (!name || !version) continue;
    // Only what is installed: dpkg keeps removed-but-configured packages in the same file.
    if (fields.status && !/\binstalled$/.test(fields.status)) continue;
    const arch = fields.architecture;
    // `Source: glibc (2.36-9)` or `Source: glibc`; absent when the source is named like the binary.
    const src = /^([^\s(]+)(?:\s*\(([^)]+)\))?$/.exec(fields.source ?? '');
    const sourceName = src?.[1];
    const sourceVersion = src?.[2]?.trim();
    // syft's convention: the source package in the `upstream` qualifier.
    const qualifiers = [
      ...(arch ? [`arch=${encodeURIComponent(arch)}`] : []),
      ...(sourceName ? [`upstream=${encodeURIComponent(sourceName)}`] : []),
    ];
    const q = qualifiers.length ? `?${qualifiers.join('&')}` : '';
    const purl =
      ecosystem === 'deb'
        ? `pkg:deb/${distro}/${encodeURIComponent(name)}@${encodeURIComponent(version)}${q}`
        : `pkg:generic/${encodeURIComponent(name)}@${encodeURIComponent(version)}${q}`;
    out.push({
      ecosystem,
      name,
      version,
      ...(arch ? { arch } : {}),
      purl,
      source,
      ...(sourceName ? { sourceName } : {}),
      ...(sourceVersion ? { sourceVersion } : {}),
      ...(distroVersion ? { distro: `${distro}-${distroVersion}` } : {}),
    });
  }
  return out;
}

function npmPackage(name: string, version: string, source: string): SbomPackage {
  const encoded = name.startsWith('@') ? `%40${name.slice(1)}` : name;
  return {
    ecosystem: 'npm',
    name,
    version,
    purl: `pkg:npm/${encoded}@${encodeURIComponent(version)}`,
    source,
  };
}

function integrityHashes(integrity: unknown): { alg: string; content: string }[] {
  if (typeof integrity !== 'string') return [];
  const out: { alg: string; content: string }[] = [];
  for (const part of integrity.split(/\s+/)) {
    const m = /^(sha512|sha384|sha256|sha1)-([A-Za-z0-9+/=]+)$/.exec(part);
    if (!m) continue;
    const alg = { sha512: 'SHA-512', sha384: 'SHA-384', sha256: 'SHA-256', sha1: 'SHA-1' }[m[1] as 'sha512'];
    out.push({ alg, content: Buffer.from(m[2]!, 'base64').toString('hex') });
  }
  return out;
}

/** Builds the CycloneDX 1.5 document; its bytes are canonical JSON (stable for signing and diffing). */
export function makeSbom(
  subject: SbomSubject,
  packages: SbomPackage[],
  entries: TreeEntry[],
  treeDigest: string,
): Buffer {
  const timestamp = new Date(subject.epoch * 1000).toISOString().replace('.000Z', 'Z');
  const pkgComponents = packages.map((p) => ({
    type: 'library',
    'bom-ref': p.purl,
    name: p.name,
    version: p.version,
    purl: p.purl,
    ...(p.hashes ? { hashes: p.hashes } : {}),
    properties: [
      { name: 'flotilla:package-manager', value: p.ecosystem },
      { name: 'flotilla:found-in', value: p.source },
      ...(p.sourceName ? [{ name: 'flotilla:source-package', value: p.sourceName }] : []),
      ...(p.sourceVersion ? [{ name: 'flotilla:source-version', value: p.sourceVersion }] : []),
      ...(p.distro ? [{ name: 'flotilla:distro', value: p.distro }] : []),
    ],
  }));
  const fileComponents = entries
    .filter((e) => e.type === 'file')
    .map((e) => ({
      type: 'file',
      'bom-ref': `file:${e.path}`,
      name: e.path,
      hashes: [{ alg: 'SHA-256', content: e.sha256! }],
      properties: [{ name: 'flotilla:mode', value: e.mode.toString(8).padStart(4, '0') }],
    }));
  const doc = {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${uuidFromName(`sbom:${subject.name}:${subject.version}:${subject.imageSha256}`)}`,
    version: 1,
    metadata: {
      timestamp,
      tools: { components: [{ type: 'application', name: 'flotilla-image', version: TOOL_VERSION }] },
      component: {
        type: 'firmware',
        'bom-ref': 'firmware',
        name: subject.name,
        version: subject.version,
        hashes: [{ alg: 'SHA-256', content: subject.imageSha256 }],
        properties: [{ name: 'flotilla:rootfs-tree-sha256', value: treeDigest }],
      },
    },
    components: [...pkgComponents, ...fileComponents],
    dependencies: [{ ref: 'firmware', dependsOn: pkgComponents.map((c) => c['bom-ref']) }],
  };
  return Buffer.from(canonicalize(doc));
}

async function readSmall(root: string, path: string): Promise<string | null> {
  try {
    // Symlinks in the tree point into the *device's* filesystem: never follow them onto the host.
    const base = await realpath(root);
    const abs = await realpath(join(root, path));
    if (!abs.startsWith(`${base}/`)) return null;
    const st = await lstat(abs);
    if (!st.isFile() || st.size > IMAGE_LIMITS.maxPackageDbBytes) return null;
    return await readFile(abs, 'utf8');
  } catch {
    return null;
  }
}

function parseJsonSafe(text: string | null): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function osReleaseId(root: string): Promise<string> {
  const text = (await readSmall(root, '/etc/os-release')) ?? (await readSmall(root, '/usr/lib/os-release'));
  const m = text ? /^ID="?([a-z0-9._-]+)"?$/m.exec(text) : null;
  return m ? m[1]! : 'debian';
}

/** os-release VERSION_ID (`12`), null when the rootfs has none (testing, sid, bare trees). */
async function osReleaseVersion(root: string): Promise<string | null> {
  const text = (await readSmall(root, '/etc/os-release')) ?? (await readSmall(root, '/usr/lib/os-release'));
  const m = text ? /^VERSION_ID="?([A-Za-z0-9._-]+)"?$/m.exec(text) : null;
  return m ? m[1]! : null;
}
