import { readFile, rename, writeFile } from 'node:fs/promises';
import {
  addSignature,
  canonicalize,
  checkInstallable,
  parseJson,
  type ReleaseManifest,
  ReleaseManifest as ReleaseManifestSchema,
  type SignedEnvelope,
  validate,
  verifyInitialRoot,
  verifyRelease,
} from '@flotilla/protocol';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { readKeyFile, readRoot } from '../key-store.js';
import { printResult } from '../output.js';
import { addVerifyOptions, allowedKinds, deviceFactsFrom, type VerifyOptions } from './bundle-options.js';

/** `flotilla manifest sign|verify`: sign a release manifest with a role key, or check one as a device would. */
export function registerManifestCommands(program: Command): void {
  const manifest = program.command('manifest').description('sign and verify release manifests');

  manifest
    .command('sign <file>')
    .description('sign a release manifest (or add a signature to a signed one) with a key file')
    .requiredOption('--key <file>', 'private key file (release, or recovery for recovery images)')
    .option('-o, --out <file>', 'where to write the signed manifest (default: <file>.signed.json)')
    .option('--json', 'print a JSON summary')
    .action(async (file: string, opts: { key: string; out?: string; json?: boolean }) => {
      const doc = await readJson(file);
      const envelope: SignedEnvelope<ReleaseManifest> =
        doc && typeof doc === 'object' && 'signed' in doc
          ? (doc as SignedEnvelope<ReleaseManifest>)
          : { signed: doc as ReleaseManifest, signatures: [] };
      validate(ReleaseManifestSchema, envelope.signed, 'release manifest');
      const { key, role } = await readKeyFile(opts.key);
      if (role !== envelope.signed.kind) {
        throw new CliError(
          'FLOTILLA_ERR_CLI_USAGE',
          `a ${envelope.signed.kind} manifest must be signed with a ${envelope.signed.kind} key, not a ${role} key`,
        );
      }
      addSignature(envelope, key);
      const out = opts.out ?? file.replace(/(\.json)?$/, '.signed.json');
      await writeFile(`${out}.tmp`, `${canonicalize(envelope)}\n`);
      await rename(`${out}.tmp`, out);
      printResult(
        Boolean(opts.json),
        { ok: true, out, keyid: key.keyId, signatures: envelope.signatures.length },
        () =>
          `signed ${envelope.signed.name} ${envelope.signed.version} with ${role} key ${key.keyId.slice(0, 16)}… → ${out}`,
      );
    });

  const verify = manifest
    .command('verify <file>')
    .description('verify a signed manifest against root.json, as a device would');
  addVerifyOptions(verify).action(async (file: string, opts: VerifyOptions) => {
    const now = new Date();
    const root = verifyInitialRoot(await readRoot(opts.root), now);
    const m = verifyRelease(await readJson(file), root, now, {
      allowKinds: allowedKinds(opts.recovery),
    });
    const device = deviceFactsFrom(opts);
    if (device) checkInstallable(m, device);
    printResult(
      Boolean(opts.json),
      {
        ok: true,
        kind: m.kind,
        name: m.name,
        version: m.version,
        securityVersion: m.securityVersion,
        imageSha256: m.image.sha256,
        expires: m.expires,
      },
      () =>
        `OK: ${m.kind} ${m.name} ${m.version} (securityVersion ${m.securityVersion}, image ${m.image.sha256.slice(0, 16)}…, expires ${m.expires})`,
    );
  });
}

async function readJson(file: string): Promise<unknown> {
  const bytes = await readFile(file).catch((cause) => {
    throw new CliError('FLOTILLA_ERR_CLI_INPUT', file, { cause });
  });
  return parseJson(bytes);
}
