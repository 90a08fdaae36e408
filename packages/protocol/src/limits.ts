/** Bounds on everything `protocol` parses; other packages keep their own limits next to their I/O. */
export const LIMITS = {
  /** Largest signed JSON document (manifests list per-chunk hashes: 1 GiB / 1 MiB chunks ≈ 70 KB). */
  maxDocumentBytes: 4 * 1024 * 1024,
  /** Largest MQTT payload a device may send. */
  maxMqttPayloadBytes: 64 * 1024,
  /** Deepest nesting accepted in any JSON document. */
  maxJsonDepth: 32,
  /** Most signatures considered on one document (bounds verification work). */
  maxSignatures: 16,
  /** Most keys in one keys (root) metadata document. */
  maxKeys: 64,
} as const;
