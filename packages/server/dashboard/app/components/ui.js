import { useState } from 'preact/hooks';
import { ago, iso } from '../format.js';
import { html } from '../html.js';

/** Status words map to a small set of colours whose contrast the a11y test checks. */
const TONE = {
  healthy: 'ok',
  completed: 'ok',
  accepted: 'ok',
  online: 'ok',
  ready: 'ok',
  succeeded: 'ok',
  Committed: 'ok',
  running: 'info',
  soaking: 'info',
  offered: 'info',
  downloading: 'info',
  installing: 'info',
  installed: 'info',
  rebooting: 'info',
  building: 'info',
  queued: 'info',
  Downloading: 'info',
  Installing: 'info',
  Rebooting: 'info',
  Verifying: 'info',
  'waiting-approval': 'warn',
  waiting: 'warn',
  paused: 'warn',
  pending: 'warn',
  scheduled: 'warn',
  retrying: 'warn',
  failed: 'bad',
  'rolled-back': 'bad',
  'timed-out': 'bad',
  aborted: 'bad',
  rejected: 'bad',
  Failed: 'bad',
  RolledBack: 'bad',
  RollingBack: 'bad',
};

/** Status words that need more than their value to be understood. */
const WORDS = {
  'waiting-approval': 'waiting for approval',
  waiting: 'waiting for a maintenance window',
};

export function Badge({ value, label }) {
  const tone = TONE[value] ?? 'neutral';
  const text = label ?? WORDS[value] ?? value?.replaceAll('-', ' ');
  return html`<span class=${`badge badge-${tone}`} data-value=${value}>${text ?? '—'}</span>`;
}

export function Time({ t }) {
  const s = iso(t);
  if (!s) return html`<span>—</span>`;
  return html`<time datetime=${s} title=${s}>${ago(t)}</time>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>${error.message}</strong>${error.code ? html` <code>${error.code}</code>` : null}
    ${error.hint ? html`<div class="hint">${error.hint}</div>` : null}
  </div>`;
}

export function Loading({ what }) {
  return html`<p class="muted" role="status">Loading ${what}…</p>`;
}

/**
 * An action button that knows the signed-in role. Buttons a role may not use stay visible and
 * focusable (aria-disabled, not disabled) so a viewer can find them and read why they are refused.
 */
export function ActionButton({
  session,
  need = 'operator',
  onAction,
  label,
  danger,
  confirmText,
  describedBy,
}) {
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState(null);
  const [confirming, setConfirming] = useState(false);
  const allowed = roleAllows(session.role, need);
  const click = async () => {
    if (!allowed) {
      setMsg({
        kind: 'denied',
        text: `Denied: a ${session.role} token may not ${label.toLowerCase()}. Ask for an ${need} token.`,
      });
      return;
    }
    // Destructive actions ask inline (no window.confirm: it blocks the page and live updates).
    if (confirmText && !confirming) {
      setConfirming(true);
      return;
    }
    setConfirming(false);
    setBusy(true);
    setMsg(null);
    try {
      await onAction();
      setMsg({ kind: 'ok', text: `${label}: done` });
    } catch (e) {
      setMsg({ kind: 'error', text: `${label} failed: ${e.message}${e.code ? ` (${e.code})` : ''}` });
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action">
    <button
      type="button"
      class=${`btn${danger ? ' btn-danger' : ''}`}
      aria-disabled=${allowed && !busy ? 'false' : 'true'}
      aria-describedby=${describedBy}
      title=${allowed ? undefined : `Needs an ${need} token`}
      onClick=${busy ? undefined : click}
    >
      ${busy ? `${label}…` : confirming ? `Confirm: ${label.toLowerCase()}` : label}
    </button>
    ${
      confirming
        ? html`<span class="action-msg action-denied" role="alert">${confirmText}
          <button type="button" class="btn btn-link" onClick=${() => setConfirming(false)}>Cancel</button></span>`
        : null
    }
    ${msg ? html`<span class=${`action-msg action-${msg.kind}`} role=${msg.kind === 'ok' ? 'status' : 'alert'}>${msg.text}</span>` : null}
  </span>`;
}

const RANK = { viewer: 0, operator: 1, admin: 2 };
export function roleAllows(role, need) {
  return (RANK[role] ?? -1) >= RANK[need];
}

/** A horizontal bar split into coloured segments, with the numbers also in text for screen readers. */
export function SegmentBar({ segments, total, label }) {
  const sum = total || segments.reduce((a, s) => a + s.value, 0) || 1;
  const text = segments.map((s) => `${s.value} ${s.name}`).join(', ');
  return html`<div class="segbar" role="img" aria-label=${`${label}: ${text}`}>
    ${segments
      .filter((s) => s.value > 0)
      .map(
        (s) =>
          html`<span class=${`seg seg-${s.tone}`} style=${`width:${(100 * s.value) / sum}%`} title=${`${s.value} ${s.name}`}></span>`,
      )}
  </div>`;
}
