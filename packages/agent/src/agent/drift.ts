import type { ReleaseManifest, Slot } from '@flotilla/protocol';
import type { EventFields } from '../report/reporter.js';
import { hashSlot } from '../slots/hash-slot.js';
import type { SlotSet } from '../slots/slot-device.js';

export interface DriftResult {
  drifted: boolean;
  firstBadChunk: number | null;
}

/** Hashes the active slot against its release manifest; reports the first differing chunk. */
export async function checkSlotDrift(options: {
  slots: SlotSet;
  slot: Slot;
  manifest: ReleaseManifest;
  readBlockBytes: number;
  signal: AbortSignal;
  report: (fields: EventFields) => Promise<void>;
}): Promise<DriftResult> {
  const { manifest, slot } = options;
  const slotHash = await hashSlot(options.slots.device(slot), manifest.image, options.readBlockBytes, {
    signal: options.signal,
  });
  const drifted = slotHash.sha256 !== manifest.image.sha256 || slotHash.firstBadChunk !== null;
  if (drifted) {
    await options.report({
      deploymentId: null,
      version: manifest.version,
      detail: {
        slot,
        firstBadChunk: slotHash.firstBadChunk,
        badChunks: slotHash.badChunks,
        chunkSize: manifest.image.chunkSize,
        expectedSha256: manifest.image.sha256,
        actualSha256: slotHash.sha256,
      },
    });
  }
  return { drifted, firstBadChunk: slotHash.firstBadChunk };
}
