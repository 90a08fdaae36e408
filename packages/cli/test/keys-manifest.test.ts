import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalize, isoAfter, SCHEMA_VERSION, sha256Hex, verifyRootRotation } from '@flotilla/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { runFlotilla } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keys = join(dir, 'keys');

function manifest(kind: 'release' | 'recovery' = 'release') {
  const chunk = sha256Hex('c');
  return {
    _type: 'release',
    schemaVersion: SCHEMA_VERSION,
    kind,
    name: 'demo-os',
    version: '1.1.0',
    securityVersion: 2,
    compatible: ['sim-board-v1'],
    image: { format: 'ext4', sha256: sha256Hex('i'), size: 4096, chunkSize: 4096, chunkHashes: [chunk] },
    sbom: { format: 'CycloneDX-1.5', sha256: sha256Hex('s'), size: 1 },
    provenance: { sourceRevision: 'r', builder: 'test', buildTime: '2026-01-01T00:00:00Z', inputs: [] },
    created: '2026-01-01T00:00:00Z',
    expires: isoAfter(new Date(), 30),
  };
}

describe('flotilla keys', () => {
  it('init writes TEST-ONLY role keys with mode 0600 and a signed root.json, printing no private key', () => {
    const r = runFlotilla(['keys', 'init', '--dir', keys, '--label', 'TEST-ONLY', '--json']);
    expect(r.code).toBe(0);
    const out = r.json();
    expect(out.keys.map((k: { role: string }) => k.role)).toEqual([
      'root',
      'root',
      'root',
      'release',
      'delta',
      'recovery',
    ]);
    for (const k of out.keys) {
      expect(statSync(join(keys, k.file)).mode & 0o777).toBe(0o600);
      const file = JSON.parse(readFileSync(join(keys, k.file), 'utf8'));
      expect(file.label).toContain('TEST-ONLY');
      expect(r.stdout).not.toContain(file.private);
    }
  });

  it('list names every role key of root.json and the private key file the directory holds for it', () => {
    const r = runFlotilla(['keys', 'list', '--dir', keys, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const root = JSON.parse(readFileSync(join(keys, 'root.json'), 'utf8')).signed;
    const listed = r.json().keys as { role: string; keyid: string; threshold: number; file: string | null }[];
    expect(r.json().rootVersion).toBe(root.version);
    for (const role of ['root', 'release', 'delta', 'recovery'])
      expect(listed.filter((k) => k.role === role).map((k) => k.keyid)).toEqual(root.roles[role].keyids);
    for (const k of listed) {
      expect(k.threshold).toBe(root.roles[k.role].threshold);
      expect(JSON.parse(readFileSync(join(keys, k.file!), 'utf8')).keyid).toBe(k.keyid);
    }
    // A root key moved offline is listed as not here.
    const offline = join(dir, 'offline-copy');
    runFlotilla([
      'keys',
      'init',
      '--dir',
      offline,
      '--label',
      'TEST-ONLY',
      '--root-keys',
      '1',
      '--root-threshold',
      '1',
    ]);
    const rootFile = runFlotilla(['keys', 'list', '--dir', offline, '--json']).json().keys[0].file;
    rmSync(join(offline, rootFile));
    const human = runFlotilla(['keys', 'list', '--dir', offline]);
    expect(human.stdout).toMatch(/^root\s+1\s+[0-9a-f]{16}…\s+not here \(offline\?\)$/m);
    expect(human.stdout).not.toMatch(/"private"/);
  });

  it('show ROLE gives the role of root.json: key ids, threshold, expiry, the private key files held', () => {
    const root = JSON.parse(readFileSync(join(keys, 'root.json'), 'utf8')).signed;
    const r = runFlotilla(['keys', 'show', 'root', '--dir', keys, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json()).toEqual({
      ok: true,
      role: 'root',
      threshold: 2,
      rootVersion: root.version,
      expires: root.expires,
      keys: root.roles.root.keyids.map((keyid: string, i: number) => ({ keyid, file: `root-${i + 1}.key` })),
    });
    const human = runFlotilla(['keys', 'show', 'release', '--dir', keys]);
    expect(human.stdout).toContain(
      `release: 1-of-1 keys (root.json version ${root.version}, expires ${root.expires})`,
    );
    expect(human.stdout).toContain(`  ${root.roles.release.keyids[0]}  release.key`);
  });

  it.each([
    ['a role that does not exist', ['keys', 'show', 'admin', '--dir', keys], 'FLOTILLA_ERR_CLI_USAGE'],
    [
      'a directory without root.json',
      ['keys', 'show', 'root', '--dir', join(dir, 'nowhere')],
      'FLOTILLA_ERR_CLI_ROOT_FILE',
    ],
  ])('show refuses %s with a coded error', (_name, args, code) => {
    const r = runFlotilla([...args, '--json']);
    expect(r.code).toBe(1);
    expect(r.json().error.code).toBe(code);
  });

  it('init refuses to overwrite an existing keys directory', () => {
    const r = runFlotilla(['keys', 'init', '--dir', keys]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('FLOTILLA_ERR_CLI_KEYS_EXIST');
  });

  it('init refuses a --dir that is a file, or under one, with FLOTILLA_ERR_CLI_KEYS_DIR, not a bare EEXIST/ENOTDIR', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    for (const [target, errno] of [
      [file, 'EEXIST'],
      [join(file, 'keys'), 'ENOTDIR'],
    ] as const) {
      const r = runFlotilla(['keys', 'init', '--dir', target, '--json']);
      expect(r.code).toBe(1);
      expect(r.json().error).toMatchObject({ code: 'FLOTILLA_ERR_CLI_KEYS_DIR' });
      expect(r.json().error.message).toContain(`${target}: ${errno}`);
      expect(r.json().error.hint).toContain('--dir');
    }
  });

  it('rotate publishes root version 2, accepted by a device trusting version 1', () => {
    const before = JSON.parse(readFileSync(join(keys, 'root.json'), 'utf8'));
    const r = runFlotilla(['keys', 'rotate', '--dir', keys, '--role', 'release', '--json']);
    expect(r.code).toBe(0);
    const after = JSON.parse(readFileSync(join(keys, 'root.json'), 'utf8'));
    expect(after.signed.version).toBe(before.signed.version + 1);
    expect(after.signed.roles.release.keyids).not.toEqual(before.signed.roles.release.keyids);
    expect(after.signed.roles.root.keyids).toEqual(before.signed.roles.root.keyids);
    expect(verifyRootRotation(before.signed, after, new Date()).version).toBe(2);
  });
});

describe('flotilla manifest', () => {
  const unsigned = join(dir, 'manifest.json');

  it('signs with the release key and verifies against root.json', () => {
    writeFileSync(unsigned, JSON.stringify(manifest()));
    const s = runFlotilla(['manifest', 'sign', unsigned, '--key', join(keys, 'release.key'), '--json']);
    expect(s.code).toBe(0);
    const v = runFlotilla(['manifest', 'verify', s.json().out, '--root', join(keys, 'root.json'), '--json']);
    expect(v.code).toBe(0);
    expect(v.json()).toMatchObject({ ok: true, version: '1.1.0' });
  });

  it('verify rejects a tampered manifest with its code', () => {
    const signed = JSON.parse(readFileSync(`${unsigned.replace(/\.json$/, '')}.signed.json`, 'utf8'));
    signed.signed.securityVersion = 99;
    const tampered = join(dir, 'tampered.json');
    writeFileSync(tampered, canonicalize(signed));
    const v = runFlotilla(['manifest', 'verify', tampered, '--root', join(keys, 'root.json'), '--json']);
    expect(v.code).toBe(1);
    expect(v.json().error.code).toBe('FLOTILLA_ERR_SIGNATURE_INVALID');
  });

  const verifySigned = (...extra: string[]) =>
    runFlotilla([
      'manifest',
      'verify',
      `${unsigned.replace(/\.json$/, '')}.signed.json`,
      '--root',
      join(keys, 'root.json'),
      '--json',
      ...extra,
    ]);

  it('verify rejects a downgrade below the installed securityVersion', () => {
    const v = verifySigned('--hardware', 'sim-board-v1', '--security-version', '5');
    expect(v.code).toBe(1);
    expect(v.json().error.code).toBe('FLOTILLA_ERR_DOWNGRADE');
  });

  it('verify refuses a securityVersion that is not a number instead of skipping the check', () => {
    const v = verifySigned('--hardware', 'sim-board-v1', '--security-version', 'abc');
    expect(v.code).toBe(1);
    expect(v.json().error.code).toBe('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT');
  });

  it('verify rejects incompatible hardware', () => {
    const v = verifySigned('--hardware', 'other-board');
    expect(v.code).toBe(1);
    expect(v.json().error.code).toBe('FLOTILLA_ERR_INCOMPATIBLE_HARDWARE');
  });

  it('sign refuses a key of the wrong role', () => {
    const s = runFlotilla(['manifest', 'sign', unsigned, '--key', join(keys, 'delta.key'), '--json']);
    expect(s.code).toBe(1);
    expect(s.json().error.code).toBe('FLOTILLA_ERR_CLI_USAGE');
  });

  it('sign refuses a manifest that does not match the schema', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...manifest(), version: 'latest' }));
    const s = runFlotilla(['manifest', 'sign', bad, '--key', join(keys, 'release.key'), '--json']);
    expect(s.code).toBe(1);
    expect(s.json().error.code).toBe('FLOTILLA_ERR_SCHEMA');
  });
});
