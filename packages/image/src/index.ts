export * from './build-image.js';
export * from './errors.js';
export { findTool } from './exec.js';
export * from './limits.js';
export * from './read-file.js';
export { hashFile, isTarball, type StagedTree, stageRootfs, type TreeEntry, treeDigest } from './tree.js';
export * from './units.js';
