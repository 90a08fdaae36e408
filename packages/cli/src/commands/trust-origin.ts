import { join } from 'node:path';

/** What `flotilla server` knows about its keys once started. */
export interface TrustOriginInput {
  keysDir: string;
  /** root.json was there before this start. */
  existedBefore: boolean;
  importedFrom: string | null;
  /** The keys directory holds a root private key. */
  holdsRootKeys: boolean;
  /** Where a plain first start put the new root keys to be moved offline (when it did). */
  offlineKeysDir?: string | null;
  rootVersion: number;
}

export type TrustOrigin = 'existing' | 'imported' | 'generated';

/**
 * Where the trust root devices must ship came from, in one line: an operator reading the first
 * start's output knows whether bundles signed with their own `flotilla keys init` keys will be
 * accepted, and what to do with a freshly made root key.
 */
export function describeTrustOrigin(x: TrustOriginInput): { origin: TrustOrigin; text: string } {
  const otherKeys =
    'bundles signed with other keys are refused (start a new data dir with --import-keys DIR to use a `flotilla keys init` set)';
  const root = `${join(x.keysDir, 'root.json')} (version ${x.rootVersion})`;
  if (x.existedBefore)
    return {
      origin: 'existing',
      text: `${root}, set up by an earlier start${x.importedFrom ? `; ${x.importedFrom} holds the same root, nothing imported` : ''}`,
    };
  if (x.importedFrom)
    return {
      origin: 'imported',
      text: `${root}, imported now from ${x.importedFrom} (root keys are never copied)`,
    };
  if (x.offlineKeysDir)
    return {
      origin: 'generated',
      text: `${root}, made now; its root key is in ${x.offlineKeysDir}: move it offline; ${otherKeys}`,
    };
  return {
    origin: 'generated',
    text: `${root}, made now by this server${x.holdsRootKeys ? ` with its root key in ${x.keysDir}` : ''}; ${otherKeys}`,
  };
}
