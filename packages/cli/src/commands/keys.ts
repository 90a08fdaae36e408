import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildRoot,
  generateKeyPair,
  generateTrustSet,
  isoAfter,
  type KeyPair,
  type Role,
  signDocument,
  verifyInitialRoot,
  verifyRootRotation,
} from '@flotilla/protocol';
import type { Command } from 'commander';
import { table } from '../api-client.js';
import { CliError } from '../errors.js';
import { ensureEmptyDir, ROOT_FILE, readKeyDir, readRoot, writePrivateKey, writeRoot } from '../key-store.js';
import { printResult } from '../output.js';

/** `flotilla keys init|list|show|rotate`: the trust root and role keys. Private keys are written 0600 and never printed. */
export function registerKeysCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('create, list, show and rotate the trust root and role keys');

  keys
    .command('init')
    .description('create root keys (k-of-n), release/delta/recovery keys and a signed root.json')
    .requiredOption('--dir <dir>', 'keys directory to create')
    .option('--root-keys <n>', 'number of root keys', '3')
    .option('--root-threshold <k>', 'root signatures needed to change the trust root', '2')
    .option('--expires-days <days>', 'validity of root.json in days', '365')
    .option('--label <prefix>', 'label written into each key file (tests use TEST-ONLY)', 'flotilla')
    .option('--force', 'add to a directory that already holds keys (never overwrites a file)')
    .option('--json', 'print a JSON summary')
    .action(
      async (opts: {
        dir: string;
        rootKeys: string;
        rootThreshold: string;
        expiresDays: string;
        label: string;
        force?: boolean;
        json?: boolean;
      }) => {
        const rootKeys = positiveInt(opts.rootKeys, '--root-keys');
        const threshold = positiveInt(opts.rootThreshold, '--root-threshold');
        if (threshold > rootKeys)
          throw new CliError('FLOTILLA_ERR_CLI_USAGE', '--root-threshold cannot exceed --root-keys');
        await ensureEmptyDir(opts.dir, Boolean(opts.force));
        const set = generateTrustSet({
          now: new Date(),
          rootKeys,
          rootThreshold: threshold,
          expiresDays: positiveInt(opts.expiresDays, '--expires-days'),
        });
        const written: { role: Role; keyid: string; file: string }[] = [];
        for (const role of ROLES) {
          for (const [i, key] of set.keys[role].entries()) {
            const file = set.keys[role].length > 1 ? `${role}-${i + 1}.key` : `${role}.key`;
            await writePrivateKey(opts.dir, file, key, role, `${opts.label} ${role} key`);
            written.push({ role, keyid: key.keyId, file });
          }
        }
        await writeRoot(opts.dir, set.root);
        const summary = {
          ok: true,
          dir: opts.dir,
          root: join(opts.dir, ROOT_FILE),
          rootVersion: 1,
          rootThreshold: threshold,
          expires: set.root.signed.expires,
          keys: written,
        };
        printResult(Boolean(opts.json), summary, () =>
          [
            `created keys in ${opts.dir} (private keys mode 0600; keep root keys offline)`,
            ...written.map((k) => `  ${k.role.padEnd(8)} ${k.keyid.slice(0, 16)}…  ${k.file}`),
            `trust root: ${summary.root} (version 1, ${threshold}-of-${rootKeys} root keys, expires ${summary.expires})`,
            'ship root.json on every device; it is public.',
          ].join('\n'),
        );
      },
    );

  registerKeysList(keys);
  registerKeysShow(keys);

  keys
    .command('rotate')
    .description('replace the keys of one role; the new root.json is signed by the old and the new root keys')
    .requiredOption('--dir <dir>', 'keys directory made by `keys init`')
    .requiredOption('--role <role>', 'role to rotate: root, release, delta or recovery')
    .option('--expires-days <days>', 'validity of the new root.json in days', '365')
    .option('--json', 'print a JSON summary')
    .action(async (opts: { dir: string; role: string; expiresDays: string; json?: boolean }) => {
      const role = roleArg(opts.role);
      const now = new Date();
      const current = await readRoot(join(opts.dir, ROOT_FILE));
      verifyInitialRoot(current, now);
      const byRole = await readKeyDir(opts.dir);
      const held = (r: Role) => (byRole.get(r) ?? []).map((k) => k.key);
      const oldRootKeys = held('root');
      const count = current.signed.roles[role].keyids.length;
      const fresh: KeyPair[] = Array.from({ length: count }, () => generateKeyPair());
      const roles = {} as Record<Role, { keys: KeyPair[]; threshold: number }>;
      for (const r of ROLES) {
        roles[r] = { keys: r === role ? fresh : held(r), threshold: current.signed.roles[r].threshold };
      }
      const next = buildRoot({
        version: current.signed.version + 1,
        expires: isoAfter(now, positiveInt(opts.expiresDays, '--expires-days')),
        roles,
      });
      const signers = role === 'root' ? [...oldRootKeys, ...fresh] : oldRootKeys;
      const signed = signDocument(next, signers);
      verifyRootRotation(current.signed, signed, now); // refuse to publish what devices would refuse

      const retired = join(opts.dir, 'retired', `v${current.signed.version}`);
      await mkdir(retired, { recursive: true, mode: 0o700 });
      for (const { file } of byRole.get(role) ?? []) await rename(join(opts.dir, file), join(retired, file));
      const files: string[] = [];
      for (const [i, key] of fresh.entries()) {
        const file = fresh.length > 1 ? `${role}-${i + 1}.key` : `${role}.key`;
        await writePrivateKey(opts.dir, file, key, role, `rotated ${role} key`);
        files.push(file);
      }
      await writeRoot(opts.dir, signed);
      const summary = {
        ok: true,
        role,
        rootVersion: next.version,
        keys: fresh.map((k, i) => ({ keyid: k.keyId, file: files[i] })),
        retired,
      };
      printResult(Boolean(opts.json), summary, () =>
        [
          `rotated ${role} keys: root.json is now version ${next.version}`,
          ...summary.keys.map((k) => `  ${k.keyid.slice(0, 16)}…  ${k.file}`),
          `old keys moved to ${retired}`,
        ].join('\n'),
      );
    });
}

/** `keys list`: the roles of root.json, each key id, and which private keys the directory holds. */
function registerKeysList(keys: Command): void {
  keys
    .command('list')
    .description("list the trust root's roles and keys, and which private keys the directory holds")
    .requiredOption('--dir <dir>', 'keys directory made by `keys init`')
    .option('--json', 'print JSON: {"ok","rootVersion","expires","keys":[{role,keyid,threshold,file}]}')
    .action(async (opts: { dir: string; json?: boolean }) => {
      const root = await readRoot(join(opts.dir, ROOT_FILE));
      const files = await privateKeyFiles(opts.dir);
      const rows = ROLES.flatMap((role) =>
        root.signed.roles[role].keyids.map((keyid) => ({
          role,
          keyid,
          threshold: root.signed.roles[role].threshold,
          file: files.get(keyid) ?? null,
        })),
      );
      const summary = {
        ok: true,
        rootVersion: root.signed.version,
        expires: root.signed.expires,
        keys: rows,
      };
      printResult(Boolean(opts.json), summary, () =>
        [
          `root.json version ${root.signed.version}, expires ${root.signed.expires}`,
          table(
            ['ROLE', 'THRESHOLD', 'KEY ID', 'PRIVATE KEY'],
            rows.map((r) => [
              r.role,
              r.threshold,
              `${r.keyid.slice(0, 16)}…`,
              r.file ?? 'not here (offline?)',
            ]),
          ),
        ].join('\n'),
      );
    });
}

/** `keys show ROLE`: one role of root.json: its key ids, threshold, the root's expiry. */
function registerKeysShow(keys: Command): void {
  keys
    .command('show')
    .description("show one role of the trust root: its key ids, threshold and the root's expiry")
    .argument('<role>', 'root, release, delta or recovery')
    .requiredOption('--dir <dir>', 'keys directory made by `keys init`')
    .option('--json', 'print JSON: {"ok","role","threshold","rootVersion","expires","keys":[{keyid,file}]}')
    .action(async (roleText: string, opts: { dir: string; json?: boolean }) => {
      const role = roleArg(roleText);
      const root = await readRoot(join(opts.dir, ROOT_FILE));
      const files = await privateKeyFiles(opts.dir);
      const { keyids, threshold } = root.signed.roles[role];
      const summary = {
        ok: true,
        role,
        threshold,
        rootVersion: root.signed.version,
        expires: root.signed.expires,
        keys: keyids.map((keyid) => ({ keyid, file: files.get(keyid) ?? null })),
      };
      printResult(Boolean(opts.json), summary, () =>
        [
          `${role}: ${threshold}-of-${keyids.length} keys (root.json version ${summary.rootVersion}, expires ${summary.expires})`,
          ...summary.keys.map((k) => `  ${k.keyid}  ${k.file ?? 'private key not here (offline?)'}`),
        ].join('\n'),
      );
    });
}

const ROLES: Role[] = ['root', 'release', 'delta', 'recovery'];

function roleArg(text: string): Role {
  if (!(ROLES as string[]).includes(text))
    throw new CliError('FLOTILLA_ERR_CLI_USAGE', `unknown role ${text} (one of ${ROLES.join(', ')})`);
  return text as Role;
}

/** Key id → the file in `dir` holding its private key. */
async function privateKeyFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const held of (await readKeyDir(dir)).values())
    for (const { key, file } of held) files.set(key.keyId, file);
  return files;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 10_000)
    throw new CliError('FLOTILLA_ERR_CLI_USAGE', `${flag} must be a positive integer`);
  return n;
}
