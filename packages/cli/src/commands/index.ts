import type { Command } from 'commander';
import { registerBundleCommands } from './bundle.js';
import { registerDeltaCommands } from './delta.js';
import { registerDevicesCommands } from './devices.js';
import { registerDiskCommands } from './disk.js';
import { registerFlashCommands } from './flash.js';
import { registerImageCommands } from './image.js';
import { registerKeysCommands } from './keys.js';
import { registerManifestCommands } from './manifest.js';
import { registerReleaseCommands } from './release.js';
import { registerRolloutCommands } from './rollout.js';
import { registerServerCommands } from './server.js';

/** Each command group is one module that adds its sub-commands to the program. */
export type RegisterCommands = (program: Command) => void;

export const commandGroups: RegisterCommands[] = [
  registerKeysCommands,
  registerManifestCommands,
  registerDeltaCommands,
  registerReleaseCommands,
  registerRolloutCommands,
  registerDevicesCommands,
  registerServerCommands,
  registerImageCommands,
  registerBundleCommands,
  registerDiskCommands,
  registerFlashCommands,
];
