import type { Command } from 'commander';

/** Each command group is one module that adds its sub-commands to the program. */
export type RegisterCommands = (program: Command) => void;

/**
 * Command groups by their top-level name, loaded on demand: `flotilla delta apply` on a device
 * loads the delta codec only, not the image builder, the HTTP client or the server.
 */
export const commandGroups: Record<string, () => Promise<RegisterCommands>> = {
  keys: async () => (await import('./keys.js')).registerKeysCommands,
  manifest: async () => (await import('./manifest.js')).registerManifestCommands,
  delta: async () => (await import('./delta.js')).registerDeltaCommands,
  release: async () => (await import('./release.js')).registerReleaseCommands,
  rollout: async () => (await import('./rollout.js')).registerRolloutCommands,
  devices: async () => (await import('./devices.js')).registerDevicesCommands,
  server: async () => (await import('./server.js')).registerServerCommands,
  image: async () => (await import('./image.js')).registerImageCommands,
  bundle: async () => (await import('./bundle.js')).registerBundleCommands,
  disk: async () => (await import('./disk.js')).registerDiskCommands,
  flash: async () => (await import('./flash.js')).registerFlashCommands,
  vulns: async () => (await import('./vulns.js')).registerVulnsCommands,
  policy: async () => (await import('./policy.js')).registerPolicyCommands,
  tokens: async () => (await import('./tokens.js')).registerTokensCommands,
  audit: async () => (await import('./audit.js')).registerAuditCommands,
};
