import { VulnsError } from './errors.js';
import type { PackageFamily } from './versions.js';

/** One installed package as the matcher sees it. */
export interface InstalledPackage {
  family: PackageFamily;
  name: string;
  version: string;
  purl: string;
  /** Debian's feeds name source packages: the dpkg `Source:` field, else the binary's own name. */
  sourceName: string;
  sourceVersion: string;
  /** os-release ID (purl namespace for deb), e.g. `debian`; null for npm. */
  distro: string | null;
  /** os-release VERSION_ID, e.g. `12`; null when the SBOM does not say. */
  distroRelease: string | null;
}

interface Component {
  type?: unknown;
  name?: unknown;
  version?: unknown;
  purl?: unknown;
  properties?: { name?: unknown; value?: unknown }[];
}

/** Reads the package components of a CycloneDX JSON SBOM (as made by @flotilla/image, or any tool using purls). */
export function sbomPackages(bytes: Uint8Array): InstalledPackage[] {
  let doc: { components?: Component[] };
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof doc;
  } catch (err) {
    throw new VulnsError('FLOTILLA_ERR_VULNS_SBOM_UNREADABLE', (err as Error).message);
  }
  if (!doc || !Array.isArray(doc.components))
    throw new VulnsError('FLOTILLA_ERR_VULNS_SBOM_UNREADABLE', 'no components array');
  const out: InstalledPackage[] = [];
  for (const c of doc.components) {
    if (c.type !== 'library' || typeof c.purl !== 'string') continue;
    const p = fromComponent(c);
    if (p) out.push(p);
  }
  return out;
}

function fromComponent(c: Component): InstalledPackage | null {
  const props = new Map<string, string>();
  for (const p of c.properties ?? [])
    if (typeof p.name === 'string' && typeof p.value === 'string') props.set(p.name, p.value);
  const purl = c.purl as string;
  const m = /^pkg:([a-z]+)\/(.+?)@([^?#]+)(?:\?([^#]*))?/.exec(purl);
  if (!m) return null;
  const [, type, path, rawVersion, query] = m;
  const qualifiers = new URLSearchParams(query ?? '');
  const version = typeof c.version === 'string' ? c.version : decodeURIComponent(rawVersion!);
  const manager = props.get('flotilla:package-manager');
  const family: PackageFamily | null =
    type === 'deb' ? 'deb' : type === 'npm' ? 'npm' : manager === 'opkg' ? 'opkg' : null;
  if (!family) return null;
  const segments = path!.split('/').map((s) => decodeURIComponent(s));
  const name = typeof c.name === 'string' ? c.name : segments.join('/');
  const distroProp = props.get('flotilla:distro') ?? qualifiers.get('distro');
  const distro = family === 'deb' ? segments[0]! : null;
  const release = distroProp ? (/-([^-]+)$/.exec(distroProp)?.[1] ?? null) : null;
  const upstream = qualifiers.get('upstream');
  const sourceName = props.get('flotilla:source-package') ?? upstream?.split('@')[0] ?? name;
  const sourceVersion = props.get('flotilla:source-version') ?? upstream?.split('@')[1] ?? version;
  return { family, name, version, purl, sourceName, sourceVersion, distro, distroRelease: release };
}
