/**
 * The one transition table of the agent (docs/agent.md#state-machine). States do their work and emit an event;
 * only this table says where an event leads. The runner persists the new state *before* the
 * state's work starts, so a power cut at any instant finds the state whose work was interrupted.
 */

import { AGENT_STATES } from '@flotilla/protocol';
import { AgentError } from '../errors.js';

export { AGENT_STATES };
export type AgentState = (typeof AGENT_STATES)[number];

export type StepEvent =
  | 'offer' // a verified offer or local bundle was accepted for processing
  | 'accepted' // hooks and space checks passed, source chosen
  | 'downloaded' // payload verified (full image in the slot, or delta in the spool)
  | 'installed' // whole image hash of the inactive slot verified
  | 'armed' // after-install hook passed, trial boot of the new slot armed
  | 'booted' // running the new slot
  | 'fell-back' // running the old slot while the new one was on trial: the bootloader gave up on it
  | 'healthy' // every health check passed before the deadline
  | 'unhealthy' // a health check failed or the deadline passed
  | 'reverted' // running the old slot again after a rollback
  | 'done' // terminal work (reports, cleanup) finished
  | 'error' // the state's work failed with a coded error
  | 'loop'; // the loop breaker fired for this state

/** [from, event, to] — one row per line, like Mender's AddTransition table. */
export const TRANSITIONS: readonly (readonly [AgentState, StepEvent, AgentState])[] = [
  ['Idle', 'offer', 'Offered'],

  ['Offered', 'accepted', 'Downloading'],
  ['Offered', 'error', 'Failed'],
  ['Offered', 'loop', 'Failed'],

  ['Downloading', 'downloaded', 'Installing'],
  ['Downloading', 'error', 'Failed'],
  ['Downloading', 'loop', 'Failed'],

  ['Installing', 'installed', 'Installed'],
  ['Installing', 'error', 'Failed'],
  ['Installing', 'loop', 'Failed'],

  ['Installed', 'armed', 'Rebooting'],
  ['Installed', 'error', 'Failed'],
  ['Installed', 'loop', 'Failed'],

  ['Rebooting', 'booted', 'Verifying'],
  ['Rebooting', 'fell-back', 'RolledBack'],
  ['Rebooting', 'error', 'Failed'],
  ['Rebooting', 'loop', 'Failed'],

  ['Verifying', 'healthy', 'Committed'],
  ['Verifying', 'unhealthy', 'RollingBack'],
  ['Verifying', 'fell-back', 'RolledBack'],
  ['Verifying', 'error', 'RollingBack'],
  ['Verifying', 'loop', 'RollingBack'],

  ['Committed', 'done', 'Idle'],
  ['Committed', 'error', 'RollingBack'], // the bootloader refused the commit: the trial is not confirmed
  ['Committed', 'loop', 'RollingBack'],

  ['RollingBack', 'reverted', 'RolledBack'],
  ['RollingBack', 'error', 'Failed'], // the hand-back failed: still on the new slot, never "rolled back"
  ['RollingBack', 'loop', 'Failed'],

  ['RolledBack', 'done', 'Idle'],
  ['RolledBack', 'error', 'Idle'],
  ['RolledBack', 'loop', 'Idle'],

  ['Failed', 'done', 'Idle'],
  ['Failed', 'error', 'Idle'],
  ['Failed', 'loop', 'Idle'],
];

const INDEX = new Map<string, AgentState>(TRANSITIONS.map(([from, ev, to]) => [`${from}:${ev}`, to]));

/** The successor of `from` on `event`; a missing row is a programming error, never a guess. */
export function nextState(from: AgentState, event: StepEvent): AgentState {
  const to = INDEX.get(`${from}:${event}`);
  if (!to) throw new AgentError('FLOTILLA_ERR_AGENT_INTERNAL', `no transition from ${from} on '${event}'`);
  return to;
}

export function isAgentState(s: unknown): s is AgentState {
  return typeof s === 'string' && (AGENT_STATES as readonly string[]).includes(s);
}

/** States whose work runs with the new slot possibly booted: a failure there means rollback. */
export const POST_REBOOT_STATES: readonly AgentState[] = ['Rebooting', 'Verifying', 'RollingBack'];
