import type { Command } from 'commander';

/** Each command group is one module that adds its sub-commands to the program. */
export type RegisterCommands = (program: Command) => void;

export const commandGroups: RegisterCommands[] = [];
