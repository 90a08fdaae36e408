import { Type } from '@sinclair/typebox';
import { FlotillaError } from './errors.js';

/**
 * The one grammar of release names and versions, wherever they enter: API schemas, CLI flags,
 * recipes and bundle headers (through the manifest schema). Both end up in file names (a build's
 * `<name>-<version>.img`, `--keep-dir`), so neither may hold a path separator, start with a dot
 * or be longer than a file-name component wants.
 */
export const RELEASE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
/** Semantic version 2.0 (no leading zeros); pre-release and build parts use [0-9A-Za-z.-] only. */
export const VERSION_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$';

export const ReleaseName = Type.String({
  pattern: RELEASE_NAME_PATTERN,
  maxLength: 64,
  description: 'letters, digits, ".", "_" and "-", starting with a letter or digit; at most 64',
});
export const SemVer = Type.String({
  pattern: VERSION_PATTERN,
  maxLength: 64,
  description: 'semantic version, e.g. 1.2.3 or 1.2.3-rc.1',
});

const NAME_RE = new RegExp(RELEASE_NAME_PATTERN);
const VERSION_RE = new RegExp(VERSION_PATTERN);

/** True when `name` is a valid release name. */
export function isReleaseName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name);
}

/** True when `version` is a valid release version (at most 64 characters). */
export function isReleaseVersion(version: unknown): version is string {
  return typeof version === 'string' && version.length <= 64 && VERSION_RE.test(version);
}

/** Returns the name, or throws FLOTILLA_ERR_RELEASE_NAME naming what was refused. */
export function checkReleaseName(name: unknown, what = 'release name'): string {
  if (isReleaseName(name)) return name;
  throw new FlotillaError('FLOTILLA_ERR_RELEASE_NAME', `${what} ${JSON.stringify(name)}`);
}

/** Returns the version, or throws FLOTILLA_ERR_RELEASE_VERSION naming what was refused. */
export function checkReleaseVersion(version: unknown, what = 'release version'): string {
  if (isReleaseVersion(version)) return version;
  throw new FlotillaError('FLOTILLA_ERR_RELEASE_VERSION', `${what} ${JSON.stringify(version)}`);
}
