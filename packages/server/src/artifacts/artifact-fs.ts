import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';

/**
 * The artifact store's one write boundary: every byte it stores goes through here. The node
 * implementation is the real disk; tests pass one that writes to /dev/full (a real ENOSPC from
 * the kernel) to check what a full disk looks like from the API and /healthz.
 */
export interface ArtifactFs {
  /** A write stream for a new file (`flags: 'wx'`: never over an existing one). */
  createWriteStream(path: string): Writable;
}

export const nodeArtifactFs: ArtifactFs = {
  createWriteStream: (path) => createWriteStream(path, { flags: 'wx' }),
};
