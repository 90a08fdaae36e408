import { fromHex, type KeyPair, keyPairFromSecretKey, toHex } from './crypto.js';
import { FlotillaError } from './errors.js';
import type { Role } from './schemas.js';

/**
 * On-disk form of one private key (the CLI writes it with mode 0600). Only the role and the key
 * are stored; the key id is derived, so a tampered id cannot point at another key.
 */
export interface KeyFile {
  kind: 'flotilla-private-key';
  keytype: 'ed25519';
  role: Role;
  label: string;
  keyid: string;
  public: string;
  private: string;
}

export function encodeKeyFile(key: KeyPair, role: Role, label: string): string {
  const file: KeyFile = {
    kind: 'flotilla-private-key',
    keytype: 'ed25519',
    role,
    label,
    keyid: key.keyId,
    public: toHex(key.publicKey),
    private: toHex(key.secretKey),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

export function decodeKeyFile(text: string): { key: KeyPair; role: Role; label: string } {
  let file: Partial<KeyFile>;
  try {
    file = JSON.parse(text) as Partial<KeyFile>;
  } catch (cause) {
    throw new FlotillaError('FLOTILLA_ERR_JSON_MALFORMED', 'key file is not JSON', { cause });
  }
  if (
    file.kind !== 'flotilla-private-key' ||
    file.keytype !== 'ed25519' ||
    typeof file.private !== 'string' ||
    !/^[0-9a-f]{128}$/.test(file.private)
  ) {
    throw new FlotillaError('FLOTILLA_ERR_SCHEMA', 'not a Flotilla ed25519 private key file');
  }
  const key = keyPairFromSecretKey(fromHex(file.private));
  if (file.public !== undefined && file.public !== toHex(key.publicKey))
    throw new FlotillaError('FLOTILLA_ERR_SCHEMA', 'key file public key does not match its private key');
  const role = file.role;
  if (role !== 'root' && role !== 'release' && role !== 'delta' && role !== 'recovery')
    throw new FlotillaError('FLOTILLA_ERR_SCHEMA', 'key file has no valid role');
  return { key, role, label: typeof file.label === 'string' ? file.label : role };
}
