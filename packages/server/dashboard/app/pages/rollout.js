import { useRef } from 'preact/hooks';
import { api } from '../api.js';
import { pauseText, phaseSegments, TotalsBar } from '../components/rollout-bits.js';
import { ActionButton, Badge, ErrorBox, Loading, SegmentBar, Time } from '../components/ui.js';
import { actorName, duration, iso, pct } from '../format.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

/** The phase's rules and where it stands against them, as one sentence (htm trims line breaks). */
function rulesText(p) {
  const success = `Succeeds at ≥ ${pct(p.successThreshold)} healthy (now ${pct(p.successPercent)}${p.successMet ? ', met' : ''})`;
  const error = `pauses above ${pct(p.errorThreshold)} failed (now ${pct(p.errorPercent)}${p.errorExceeded ? ', exceeded' : ''})`;
  return `${success}; ${error}; judged after ${p.minExecuted} finished (${p.executed} so far).`;
}

const ACTIVE = ['scheduled', 'running', 'waiting', 'waiting-approval', 'soaking'];

function Phase({ p, session, rolloutId, reload, waitingOn }) {
  const descId = `phase-${p.index}-rules`;
  const canApprove = p.requireApproval && !p.approved && waitingOn === p.index;
  return html`<li class=${`phase phase-${p.status}`} data-phase=${p.index} aria-labelledby=${`phase-${p.index}-h`}>
    <div class="phase-head">
      <h3 id=${`phase-${p.index}-h`}>Phase ${p.index + 1}: ${p.name}</h3>
      <${Badge} value=${p.status} />
      ${p.requireApproval ? html`<${Badge} value=${p.approved ? 'accepted' : 'pending'} label=${p.approved ? 'approved' : 'needs approval'} />` : null}
    </div>
    <${SegmentBar} label=${`Phase ${p.index + 1}`} total=${p.total} segments=${phaseSegments(p)} />
    <p class="phase-counts" data-testid=${`phase-${p.index}-counts`}>
      <strong>${p.healthy}</strong> of ${p.total} healthy · ${p.inFlight} in progress · ${p.failed} failed${p.rolledBack ? ` (${p.rolledBack} rolled back)` : ''}${p.retrying ? ` · ${p.retrying} retrying` : ''} · ${p.notStarted} not started${p.reverted ? ` · ${p.reverted} reverted` : ''}
    </p>
    <p class="phase-rules muted" id=${descId}>
      ${rulesText(p)}
      ${p.soakEndsAt ? html` Soaking until <time datetime=${iso(p.soakEndsAt)}>${iso(p.soakEndsAt).slice(11, 19)} UTC</time>.` : null}
      ${p.startedAt ? html` Started <${Time} t=${p.startedAt} />.` : null}
    </p>
    ${
      canApprove
        ? html`<p>
          <${ActionButton}
            session=${session}
            label=${`Approve phase ${p.index + 1}`}
            describedBy=${descId}
            onAction=${() => api.approvePhase(rolloutId, p.index).then(reload)}
          />
        </p>`
        : null
    }
  </li>`;
}

export function RolloutPage({ session, id }) {
  // Rollout events name the rollout; device events name a deployment, which may be one of ours.
  const deploymentIds = useRef(new Set());
  const mine = (ev) =>
    (ev.type.startsWith('rollout') && ev.data?.rolloutId === id) ||
    (ev.type === 'device.event' &&
      deploymentIds.current.has(String(ev.data?.deploymentId).replace(/-rb$/, '')));
  const res = useResource(() => api.rollout(id), [id], mine);
  const deps = useResource(() => api.rolloutDeployments(id), [id], mine);
  deploymentIds.current = new Set((deps.data?.items ?? []).map((x) => x.id));
  const r = res.data;
  const s = r?.summary;
  const reload = () => {
    res.reload();
    deps.reload();
  };
  const waitingOn =
    s?.status === 'waiting-approval'
      ? (s.phases.find((p) => p.status === 'waiting-approval')?.index ?? null)
      : null;
  return html`<section aria-labelledby="rollout-h">
    <p class="crumbs"><a href=${link.rollouts()}>Rollouts</a> ›</p>
    <h1 id="rollout-h" tabindex="-1">Rollout ${r?.name ?? id}</h1>
    <${ErrorBox} error=${res.error} />
    ${
      !s
        ? res.error
          ? null
          : html`<${Loading} what="the rollout" />`
        : html`
          <dl class="facts">
            <div><dt>Status</dt><dd data-field="status"><${Badge} value=${s.status} /></dd></div>
            <div><dt>Release</dt><dd>${r.release}</dd></div>
            <div><dt>Devices</dt><dd>${s.totals.healthy} of ${s.totals.devices} healthy, ${s.totals.failed} failed${s.totals.aborted ? `, ${s.totals.aborted} stopped by the abort` : ''}</dd></div>
            <div><dt>Rate</dt><dd>${s.ratePerMinute ? `${s.ratePerMinute} offers/min` : 'no limit'}${s.inMaintenanceWindow ? '' : ' · outside maintenance window'}</dd></div>
            <div><dt>Created</dt><dd><${Time} t=${r.created} />${r.createdBy ? ` by ${actorName(r.createdBy)}` : ''}</dd></div>
          </dl>
          <${TotalsBar} totals=${s.totals} label="All devices" />
          ${s.pause ? html`<div class="callout callout-warn" role="note" data-testid="pause-reason">${pauseText(s.pause, s.phases)}</div>` : null}
          ${s.rollingBack ? html`<div class="callout callout-bad" role="note">Rolling back: devices this rollout updated are offered their previous release.</div>` : null}
          ${s.status === 'waiting-approval' ? html`<div class="callout callout-warn" role="note">Waiting for an operator to approve phase ${(waitingOn ?? 0) + 1}.</div>` : null}
          ${s.status === 'waiting' ? html`<div class="callout callout-warn" role="note" data-testid="waiting-window">Waiting for a maintenance window to open: no new offers until then; devices already updating carry on.</div>` : null}
          ${s.failure ? html`<div class="callout callout-bad" role="note" data-testid="failure-reason">Failed: every device of phase ${s.failure.phase + 1} finished and ${s.failure.healthy} of ${s.failure.total} are healthy, below its ${pct(s.failure.successThreshold)} success threshold. Nothing could change any more.</div>` : null}
          <div class="actions" role="group" aria-label="Rollout actions">
            ${ACTIVE.includes(s.status) ? html`<${ActionButton} session=${session} label="Pause rollout" onAction=${() => api.pauseRollout(id).then(reload)} />` : null}
            ${s.status === 'paused' ? html`<${ActionButton} session=${session} label="Resume rollout" onAction=${() => api.resumeRollout(id).then(reload)} />` : null}
            ${
              ACTIVE.includes(s.status) || s.status === 'paused'
                ? html`<${ActionButton}
                  session=${session}
                  label="Abort rollout"
                  danger=${true}
                  confirmText="Aborting cancels every offer not yet installed. It cannot be undone."
                  onAction=${() => api.abortRollout(id).then(reload)}
                />`
                : null
            }
          </div>
          <h2>Phases</h2>
          <ol class="phases">
            ${s.phases.map((p) => html`<${Phase} p=${p} session=${session} rolloutId=${id} reload=${reload} waitingOn=${waitingOn} />`)}
          </ol>
          ${r.policy ? html`<p class="muted">Per-device timeout ${duration(r.policy.deviceTimeoutSeconds)} · at most ${r.policy.maxConcurrent} in flight · automatic rollback ${r.policy.autoRollback ? 'on' : 'off'}</p>` : null}
        `
    }
    <section aria-labelledby="rdeps-h">
      <h2 id="rdeps-h">Devices</h2>
      <${ErrorBox} error=${deps.error} />
      ${
        deps.data?.items?.length
          ? html`<table>
            <thead><tr><th scope="col">Device</th><th scope="col">Phase</th><th scope="col">State</th><th scope="col">From</th><th scope="col">Attempts</th><th scope="col">Reason</th><th scope="col">Updated</th></tr></thead>
            <tbody>
              ${deps.data.items.map(
                (x) => html`<tr data-device=${x.deviceId}>
                  <th scope="row"><a href=${link.device(x.deviceId)}>${x.deviceId}</a></th>
                  <td>${x.phase + 1}</td>
                  <td><${Badge} value=${x.state} /></td>
                  <td>${x.fromVersion ?? '—'}</td>
                  <td>${x.attempts}</td>
                  <td>${x.failureReason ?? ''}</td>
                  <td><${Time} t=${x.updated ?? x.updatedAt} /></td>
                </tr>`,
              )}
            </tbody>
          </table>`
          : deps.data
            ? html`<p class="muted">No devices assigned yet.</p>`
            : null
      }
    </section>
  </section>`;
}
