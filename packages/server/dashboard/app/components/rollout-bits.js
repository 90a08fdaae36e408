import { actorName, iso, pct } from '../format.js';
import { html } from '../html.js';
import { SegmentBar } from './ui.js';

/** Why a rollout is paused, in one sentence an operator can act on. */
export function pauseText(pause, phases = []) {
  if (!pause) return null;
  if (pause.kind === 'error-threshold') {
    const name = phases[pause.phase]?.name ?? `phase ${pause.phase + 1}`;
    const share = pause.total ? (100 * pause.failed) / pause.total : 0;
    return `Paused automatically: ${pause.failed} of ${pause.total} devices failed in ${name} (${pct(share)}), above the error threshold of ${pct(pause.threshold)}.`;
  }
  if (pause.kind === 'operator') {
    return `Paused by ${actorName(pause.by) ?? 'an operator'} at ${iso(pause.at)}${pause.note ? `: ${pause.note}` : '.'}`;
  }
  return `Paused (${pause.kind}).`;
}

export function phaseSegments(p) {
  return [
    { name: 'healthy', value: p.healthy, tone: 'ok' },
    { name: 'in progress', value: p.inFlight, tone: 'info' },
    { name: 'retrying', value: p.retrying, tone: 'warn' },
    { name: 'failed', value: p.failed, tone: 'bad' },
    { name: 'not started', value: p.notStarted, tone: 'neutral' },
    { name: 'cancelled', value: p.cancelled, tone: 'muted' },
    { name: 'stopped by abort', value: p.aborted ?? 0, tone: 'muted' },
  ];
}

export function TotalsBar({ totals, label }) {
  return html`<${SegmentBar}
    label=${label}
    total=${totals.devices}
    segments=${[
      { name: 'healthy', value: totals.healthy, tone: 'ok' },
      { name: 'in progress', value: totals.inFlight, tone: 'info' },
      { name: 'failed', value: totals.failed, tone: 'bad' },
      { name: 'not started', value: totals.notStarted, tone: 'neutral' },
      { name: 'cancelled', value: totals.cancelled, tone: 'muted' },
      { name: 'stopped by abort', value: totals.aborted ?? 0, tone: 'muted' },
    ]}
  />`;
}
