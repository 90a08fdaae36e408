/**
 * `.flot` bundle layout (all in one pass, nothing refers backwards):
 *
 *   offset 0   6 bytes   magic "FLOT1\n"
 *   offset 6   4 bytes   header length N, unsigned big-endian (at most IMAGE_LIMITS.maxBundleHeaderBytes)
 *   offset 10  N bytes   header: canonical JSON of protocol's BundleHeader
 *                        { _type: 'bundle', schemaVersion, manifest: SignedRelease,
 *                          sections: [{ name: 'sbom', size, sha256 }, { name: 'image', size, sha256 }] }
 *   then       the sections' bytes, back to back, in the order the header lists them
 *
 * The signed manifest comes first so a reader verifies trust before it touches the payload;
 * each section's size and hash must equal what the *signed* manifest says, so the unsigned
 * header adds no authority of its own.
 */
export const BUNDLE_MAGIC = Buffer.from('FLOT1\n', 'latin1');
export const BUNDLE_PREFIX_BYTES = BUNDLE_MAGIC.length + 4;
export const BUNDLE_SECTION_ORDER = ['sbom', 'image'] as const;
export type BundleSectionName = (typeof BUNDLE_SECTION_ORDER)[number];
