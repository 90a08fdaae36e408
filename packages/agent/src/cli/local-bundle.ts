import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { DeviceFacts, RootMetadata } from '@flotilla/protocol';
import { AgentError } from '../errors.js';

export interface LocalBundle {
  path: string;
  manifest: unknown;
  imageOffset: number;
  imageSize: number;
}

/**
 * Verifies a `.flot` bundle's signed manifest, the device rules and its SBOM with the streaming
 * reader of @flotilla/image (loaded only here, so the daemon's idle memory does not pay for it),
 * and finds where the image section starts. The image itself is then streamed by the same
 * chunk-verifying installer as a download.
 */
export async function openLocalBundle(
  path: string,
  root: RootMetadata,
  now: Date,
  device: DeviceFacts,
): Promise<LocalBundle> {
  const { readBundle, BUNDLE_PREFIX_BYTES } = await import('@flotilla/image');
  let manifest: unknown = null;
  let imageSize = 0;
  let sbomSize = 0;
  for await (const part of readBundle(createReadStream(path), {
    root,
    now,
    allowKinds: ['release', 'recovery'],
    device,
  })) {
    if (part.type === 'manifest') {
      manifest = part.signed;
      imageSize = part.manifest.image.size;
      sbomSize = part.manifest.sbom.size;
    } else if (part.type === 'sbom') break; // verified; the image follows
  }
  if (!manifest) throw new AgentError('FLOTILLA_ERR_AGENT_BUNDLE', `${path}: no manifest`);
  const fh = await open(path, 'r');
  try {
    const len = Buffer.alloc(4);
    await fh.read(len, 0, 4, BUNDLE_PREFIX_BYTES - 4);
    return { path, manifest, imageSize, imageOffset: BUNDLE_PREFIX_BYTES + len.readUInt32BE(0) + sbomSize };
  } finally {
    await fh.close();
  }
}
