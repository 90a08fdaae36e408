import { readFile } from 'node:fs/promises';
import { diskArch, ImageError, parseSize, parseUbootEnvText } from '@flotilla/image';
import type { DeviceFacts, ReleaseKind, ReleaseManifest, RootMetadata } from '@flotilla/protocol';
import type { Command } from 'commander';
import { parseIntOption, trustRoot } from './image.js';

// Options several commands share, declared and read in one place so they mean the same everywhere.

/** Releases always; recovery images (signed by the recovery role) only when asked for. */
export function allowedKinds(recovery: boolean | undefined): ReleaseKind[] {
  return recovery ? ['release', 'recovery'] : ['release'];
}

/** `bundle verify` and `manifest verify`: check a release as a device would. */
export interface VerifyOptions {
  root: string;
  recovery?: boolean;
  hardware?: string;
  securityVersion?: string;
  json?: boolean;
}

export function addVerifyOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--root <file>', 'trusted root.json')
    .option('--recovery', 'accept recovery images (signed by the recovery role)')
    .option('--hardware <id>', 'also check the release is compatible with this hardware')
    .option('--security-version <n>', 'also check anti-rollback against this installed securityVersion')
    .option('--json', 'print a JSON result');
}

/**
 * The device a verify command checks installability for: `--hardware` (required as soon as a
 * device check is asked for) and `--security-version` (a non-negative integer, default 0).
 */
export function deviceFactsFrom(opts: VerifyOptions): DeviceFacts | undefined {
  if (opts.hardware === undefined && opts.securityVersion === undefined) return undefined;
  if (opts.hardware === undefined)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', '--security-version needs --hardware too');
  return {
    hardware: opts.hardware,
    securityVersion: parseIntOption(opts.securityVersion, '--security-version') ?? 0,
  };
}

/** `disk build` and `flash`: a bundle verified against a root, laid out as a factory disk. */
export interface DiskLayoutOptions {
  bundle: string;
  root: string;
  slotSize?: string;
  dataSize: string;
  diskSize?: string;
  arch?: string;
  /** aarch64: the `u-boot-initial-env` of the board's U-Boot build (its default environment). */
  ubootInitialEnv?: string;
  recovery?: boolean;
}

/** What buildDiskImage and flashBundle take from those options (they verify the bundle). */
export async function diskLayoutArgs(opts: DiskLayoutOptions): Promise<{
  bundlePath: string;
  root: RootMetadata;
  slotSize: number | undefined;
  dataSize: number;
  diskSize?: number;
  arch?: string;
  ubootBoardDefaults?: Record<string, string>;
  rootJson: Uint8Array;
  allowRecovery: boolean;
}> {
  if (opts.arch !== undefined) diskArch(opts.arch); // refused before the root or bundle is read
  return {
    bundlePath: opts.bundle,
    root: await trustRoot(opts.root),
    rootJson: await readFile(opts.root),
    slotSize: opts.slotSize ? parseSize(opts.slotSize, '--slot-size') : undefined,
    dataSize: parseSize(opts.dataSize, '--data-size'),
    ...(opts.diskSize ? { diskSize: parseSize(opts.diskSize, '--disk-size') } : {}),
    ...(opts.arch !== undefined ? { arch: opts.arch } : {}),
    ...(opts.ubootInitialEnv !== undefined
      ? { ubootBoardDefaults: parseUbootEnvText(await readFile(opts.ubootInitialEnv, 'utf8')) }
      : {}),
    allowRecovery: Boolean(opts.recovery),
  };
}

/** How a command's JSON names the release it wrote. */
export function releaseSummary(m: ReleaseManifest): {
  name: string;
  version: string;
  kind: ReleaseKind;
  imageSha256: string;
} {
  return { name: m.name, version: m.version, kind: m.kind, imageSha256: m.image.sha256 };
}
