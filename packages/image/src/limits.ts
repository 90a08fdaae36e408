/** Every bound and default of `@flotilla/image` in one place. */
export const IMAGE_LIMITS = {
  /** Bundle header (JSON with the signed manifest): refused above this before it is read. */
  maxBundleHeaderBytes: 4 * 1024 * 1024,
  /** Largest chunk a reader buffers (one chunk is hashed before it is handed on). */
  maxChunkSize: 16 * 1024 * 1024,
  /** Largest SBOM section a reader buffers. */
  maxSbomBytes: 32 * 1024 * 1024,
  /** Default chunk size of a release image: bounded agent memory, short manifests. */
  defaultChunkSize: 1024 * 1024,
  /** Most files in one rootfs tree (bounds staging and SBOM work). */
  maxTreeEntries: 200_000,
  /** Largest metadata file parsed for the SBOM (dpkg/opkg status, package.json, lockfiles). */
  maxPackageDbBytes: 16 * 1024 * 1024,
  /** Most bytes of tool output kept for an error message. */
  maxToolOutputBytes: 64 * 1024,
  /** Timestamp put on every file when the recipe names none (2024-01-01T00:00:00Z). */
  defaultSourceDateEpoch: 1_704_067_200,
  /** Default manifest lifetime. */
  defaultExpiresDays: 365,
  /** U-Boot environment size (one copy) inside the boot-environment partition. */
  ubootEnvSize: 0x4000,
} as const;
