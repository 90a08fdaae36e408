import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  type BuiltRelease,
  buildRelease,
  DEFAULT_IMAGE_FORMAT,
  formatBytes,
  ImageError,
  loadRecipe,
  materialiseRecipe,
  parseSize,
  readBundleHeader,
  recipeReleaseOptions,
  resolveSigningKey,
  verifyBundle,
  writeBundle,
} from '@flotilla/image';
import { type ReleaseKind, verifyRelease } from '@flotilla/protocol';
import type { Command } from 'commander';
import { bundleFileStats } from '../bundle-file.js';
import { printResult } from '../output.js';
import { addVerifyOptions, allowedKinds, deviceFactsFrom, type VerifyOptions } from './bundle-options.js';
import { byteBars, parseFormat, parseIntOption, phaseBar, sourceRevisionOf, trustRoot } from './image.js';

interface CreateOpts {
  out: string;
  rootfs?: string;
  recipe?: string;
  name: string;
  version?: string;
  securityVersion?: string;
  compatible?: string;
  kind: string;
  key?: string;
  keys?: string;
  format?: string;
  size?: string;
  epoch?: string;
  chunkSize: string;
  expiresDays: string;
  sourceRevision?: string;
  keepDir?: string;
  json?: boolean;
}

/** `flotilla bundle create|verify|inspect`: the self-contained signed `.flot` file. */
export function registerBundleCommands(program: Command): void {
  const bundle = program.command('bundle').description('create, verify and inspect signed .flot bundles');

  bundle
    .command('create')
    .description('build the image, SBOM and signed manifest, and pack them into one .flot file')
    .requiredOption('-o, --out <file>', 'bundle file to write (atomically)')
    .option('--rootfs <path>', 'rootfs directory or tarball (or an image file with --format raw)')
    .option('--recipe <file>', 'a firmware recipe.json instead of --rootfs and the release options')
    .option('--name <name>', 'release name', 'flotilla')
    .option('--version <semver>', 'release version')
    .option('--security-version <n>', 'anti-rollback counter (devices refuse lower ones)')
    .option('--compatible <ids>', 'comma-separated hardware ids')
    .option('--kind <kind>', 'release or recovery', 'release')
    .option('--key <file>', 'signing key file (release key; recovery key for --kind recovery)')
    .option('--keys <dir>', 'keys directory; the key of the needed role is picked')
    .option('--format <fs>', `ext4, squashfs, erofs or raw (default ${DEFAULT_IMAGE_FORMAT})`)
    .option('--size <bytes>', 'partition size, e.g. 8M (default 64M)')
    .option('--epoch <seconds>', 'timestamp on every file (default $SOURCE_DATE_EPOCH or 2024-01-01)')
    .option('--chunk-size <bytes>', 'bytes per verified chunk', '1M')
    .option('--expires-days <days>', 'manifest validity', '365')
    .option('--source-revision <rev>', 'source revision for provenance (default: git HEAD of the input)')
    .option('--keep-dir <dir>', 'also keep the image, manifest and SBOM files here')
    .option('--json', 'print a JSON summary')
    .action(async (opts: CreateOpts) => {
      const json = Boolean(opts.json);
      const started = Date.now();
      const bar = phaseBar('bundle create', 7, json);
      const bytes = byteBars(json);
      const work = await mkdtemp(join(tmpdir(), 'flotilla-bundle-'));
      try {
        const release = await buildFromOptions(opts, work, (phase) => bar.phase(phase));
        bar.stop();
        const written = await writeBundle({
          manifest: release.manifest,
          imagePath: release.imagePath,
          sbom: release.sbom,
          output: opts.out,
          onProgress: (d, t) => bytes.update('packing', d, t),
        });
        bytes.stop();
        const m = release.manifest.signed;
        const summary = {
          ok: true,
          out: written.path,
          bundleBytes: written.size,
          bundleSha256: written.sha256,
          name: m.name,
          version: m.version,
          kind: m.kind,
          securityVersion: m.securityVersion,
          compatible: m.compatible,
          image: {
            format: m.image.format,
            size: m.image.size,
            sha256: m.image.sha256,
            chunks: m.image.chunkHashes.length,
          },
          sbom: { sha256: m.sbom.sha256, size: m.sbom.size, packages: release.packages },
          signedBy: release.manifest.signatures.map((s) => s.keyid),
          expires: m.expires,
          kept: opts.keepDir
            ? { image: release.imagePath, manifest: release.manifestPath, sbom: release.sbomPath }
            : null,
          durationMs: Date.now() - started,
        };
        printResult(json, summary, () =>
          [
            `wrote ${summary.out}: ${m.name} ${m.version} (${m.kind}, securityVersion ${m.securityVersion}), ${formatBytes(written.size)}`,
            `  image  ${m.image.format} ${formatBytes(m.image.size)} sha256 ${m.image.sha256} (${m.image.chunkHashes.length} chunks)`,
            `  sbom   CycloneDX 1.5, ${release.packages} packages, sha256 ${m.sbom.sha256.slice(0, 16)}…`,
            `  signed by ${m.kind} key ${summary.signedBy[0]?.slice(0, 16)}…, expires ${m.expires}`,
            ...(summary.kept
              ? [`  kept ${summary.kept.image}, ${summary.kept.manifest}, ${summary.kept.sbom}`]
              : []),
            `  ${(summary.durationMs / 1000).toFixed(1)} s`,
          ].join('\n'),
        );
      } finally {
        bar.stop();
        bytes.stop();
        await rm(work, { recursive: true, force: true });
      }
    });

  const verify = bundle
    .command('verify')
    .description(
      'verify a bundle as a device would: signature and role, expiry, every chunk and the image hash',
    )
    .argument('<file>', '.flot bundle');
  addVerifyOptions(verify).action(async (file: string, opts: VerifyOptions) => {
    const json = Boolean(opts.json);
    const bytes = byteBars(json);
    try {
      const root = await trustRoot(opts.root);
      const device = deviceFactsFrom(opts);
      await bundleFileStats(file);
      const r = await verifyBundle(createReadStream(file, { highWaterMark: 1024 * 1024 }), {
        root,
        now: new Date(),
        allowKinds: allowedKinds(opts.recovery),
        device,
        onChunk: (d, t) => bytes.update('verifying', d, t),
      });
      bytes.stop();
      const m = r.manifest;
      const summary = {
        ok: true,
        file,
        name: m.name,
        version: m.version,
        kind: m.kind,
        securityVersion: m.securityVersion,
        compatible: m.compatible,
        imageSha256: r.imageSha256,
        imageSize: m.image.size,
        chunks: m.image.chunkHashes.length,
        sbomSha256: m.sbom.sha256,
        signedBy: r.signed.signatures.map((s) => s.keyid),
        expires: m.expires,
        bundleBytes: r.bundleBytes,
      };
      printResult(json, summary, () =>
        [
          `OK ${file}: ${m.name} ${m.version} (${m.kind}) verified against ${opts.root}`,
          `  signature by ${m.kind} key ${summary.signedBy[0]?.slice(0, 16)}…, expires ${m.expires}`,
          `  ${summary.chunks} chunks and the image sha256 ${r.imageSha256} match; SBOM matches`,
          ...(device
            ? [`  installable on ${device.hardware} at securityVersion ${device.securityVersion}`]
            : []),
        ].join('\n'),
      );
    } finally {
      bytes.stop();
    }
  });

  bundle
    .command('inspect')
    .description('show what a bundle claims (header only; with --root the manifest signature is checked too)')
    .argument('<file>', '.flot bundle')
    .option('--root <file>', 'trusted root.json to check the manifest signature against')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { root?: string; json?: boolean }) => {
      await bundleFileStats(file);
      const header = await readBundleHeader(createReadStream(file, { highWaterMark: 64 * 1024 }));
      const m = header.manifest.signed;
      let signature: { checked: boolean; valid?: boolean; error?: { code: string; message: string } } = {
        checked: false,
      };
      if (opts.root) {
        const root = await trustRoot(opts.root);
        try {
          verifyRelease(header.manifest, root, new Date(), { allowKinds: ['release', 'recovery'] });
          signature = { checked: true, valid: true };
        } catch (err) {
          const e = err as { code?: string; message?: string };
          signature = {
            checked: true,
            valid: false,
            error: { code: String(e.code), message: String(e.message) },
          };
        }
      }
      const result = {
        ok: signature.valid !== false,
        file,
        verified: false,
        signature,
        sections: header.sections,
        manifest: header.manifest,
      };
      printResult(Boolean(opts.json), result, () =>
        [
          `${file} (payload NOT verified; use \`flotilla bundle verify\`)`,
          `  ${m.name} ${m.version}  kind ${m.kind}  securityVersion ${m.securityVersion}`,
          `  compatible ${m.compatible.join(', ')}`,
          `  image ${m.image.format} ${formatBytes(m.image.size)} sha256 ${m.image.sha256}`,
          `        ${m.image.chunkHashes.length} chunks of ${formatBytes(m.image.chunkSize)}`,
          `  sbom  ${m.sbom.format} ${formatBytes(m.sbom.size)} sha256 ${m.sbom.sha256}`,
          `  built ${m.provenance.buildTime} by ${m.provenance.builder}`,
          `        source ${m.provenance.sourceRevision}; inputs ${m.provenance.inputs.map((i) => `${i.name}=${i.sha256.slice(0, 12)}…`).join(', ')}`,
          `  created ${m.created}, expires ${m.expires}`,
          `  signatures ${header.manifest.signatures.map((s) => `${s.keyid.slice(0, 16)}…`).join(', ') || 'none'}`,
          `  signature check: ${
            !signature.checked
              ? 'not checked (pass --root)'
              : signature.valid
                ? 'valid'
                : `INVALID ${signature.error?.code}: ${signature.error?.message}`
          }`,
        ].join('\n'),
      );
      if (signature.checked && !signature.valid) process.exitCode = 1;
    });
}

async function buildFromOptions(
  opts: CreateOpts,
  work: string,
  onProgress: (phase: string) => void,
): Promise<BuiltRelease> {
  const outDir = opts.keepDir ?? join(work, 'release');
  const common = { outDir, chunkSize: parseSize(opts.chunkSize, '--chunk-size'), onProgress };
  const expiresDays = parseIntOption(opts.expiresDays, '--expires-days');
  const epoch = parseIntOption(opts.epoch ?? process.env.SOURCE_DATE_EPOCH, '--epoch');
  if (opts.recipe) {
    if (opts.rootfs)
      throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', 'pass --recipe or --rootfs, not both');
    const recipe = await loadRecipe(opts.recipe);
    onProgress('assembling');
    const tree = join(work, 'rootfs');
    await materialiseRecipe(recipe, tree);
    const signingKey = await resolveSigningKey({ keyFile: opts.key, keysDir: opts.keys, role: recipe.kind });
    const fromRecipe = recipeReleaseOptions(recipe, tree);
    return buildRelease({
      ...common,
      ...fromRecipe,
      format: opts.format ? parseFormat(opts.format) : recipe.format,
      partitionSize: opts.size ? parseSize(opts.size, '--size') : recipe.partitionSize,
      epoch: epoch ?? recipe.sourceDateEpoch,
      meta: {
        ...fromRecipe.meta,
        expiresDays,
        // The recipe and its layers live in the recipes directory: any change there makes it dirty.
        sourceRevision: opts.sourceRevision ?? sourceRevisionOf(dirname(dirname(resolve(opts.recipe)))),
      },
      signingKey,
    });
  }
  if (!opts.rootfs)
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', 'pass --rootfs PATH or --recipe FILE');
  for (const [flag, v] of [
    ['--version', opts.version],
    ['--security-version', opts.securityVersion],
    ['--compatible', opts.compatible],
  ] as const)
    if (v === undefined)
      throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${flag} is required with --rootfs`);
  if (opts.kind !== 'release' && opts.kind !== 'recovery')
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `--kind ${opts.kind} (release or recovery)`);
  const kind = opts.kind as ReleaseKind;
  const signingKey = await resolveSigningKey({ keyFile: opts.key, keysDir: opts.keys, role: kind });
  return buildRelease({
    ...common,
    input: opts.rootfs,
    format: parseFormat(opts.format ?? DEFAULT_IMAGE_FORMAT),
    partitionSize: parseSize(opts.size ?? '64M', '--size'),
    epoch,
    meta: {
      name: opts.name,
      version: opts.version!,
      kind,
      securityVersion: parseIntOption(opts.securityVersion, '--security-version')!,
      compatible: opts
        .compatible!.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      expiresDays,
      sourceRevision: opts.sourceRevision ?? sourceRevisionOf(resolve(opts.rootfs)),
    },
    signingKey,
  });
}
