import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { renderMosquittoAcl } from '@flotilla/protocol';
import type { CredentialIssuer } from '../devices/registry.js';
import type { Store } from '../store/store.js';

/** Mosquitto 2's own password hash (`$7$`: PBKDF2-SHA512, 101 iterations, 12-byte salt). */
export function mosquittoHash(password: string, iterations = 101, salt: Buffer = randomBytes(12)): string {
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export interface MosquittoFiles {
  passwordFile: string;
  aclFile: string;
  /** The user the server connects as (full ACL rights over device topics). */
  serverUser: string;
  serverPassword: string;
  /** Makes Mosquitto re-read its files (SIGHUP to its pid). */
  reload: () => void;
}

/**
 * Mosquitto cannot verify per-connection signed passwords, so each accepted device gets a static
 * random secret (returned once, over the authenticated registration call). Only a Mosquitto hash
 * is kept; the password and ACL files are re-rendered from the store and Mosquitto reloaded.
 */
export class MosquittoCredentials implements CredentialIssuer {
  private readonly serverHash: string;

  constructor(
    private readonly store: Store,
    private readonly files: MosquittoFiles,
    private readonly clock: () => number = Date.now,
  ) {
    this.serverHash = mosquittoHash(files.serverPassword);
  }

  async issue(deviceId: string): Promise<{ username: string; password: string }> {
    const password = randomBytes(24).toString('base64url');
    await this.store.devices.setMqttSecretHash(deviceId, mosquittoHash(password), this.clock());
    await this.render();
    return { username: deviceId, password };
  }

  async revoke(deviceId: string): Promise<void> {
    await this.store.devices.setMqttSecretHash(deviceId, null, this.clock());
    await this.render();
  }

  /** Writes both files atomically and asks Mosquitto to reload them. */
  async render(): Promise<void> {
    const lines = [`${this.files.serverUser}:${this.serverHash}`];
    for (const c of await this.store.devices.mqttCredentials()) lines.push(`${c.id}:${c.hash}`);
    atomicWrite(this.files.passwordFile, `${lines.join('\n')}\n`);
    atomicWrite(this.files.aclFile, renderMosquittoAcl(this.files.serverUser));
    this.files.reload();
  }
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}
