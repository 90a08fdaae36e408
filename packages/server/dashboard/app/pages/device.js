import { api } from '../api.js';
import { PlacementForm } from '../components/placement-form.js';
import { ActionButton, Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { bytes, iso, shortHash } from '../format.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { buildTimeline } from '../timeline.js';
import { useResource } from '../use-resource.js';

const KIND_TEXT = {
  offered: 'Offered',
  'offer-accepted': 'Offer accepted',
  'offer-rejected': 'Offer rejected',
  'download-progress': 'Downloading',
  downloaded: 'Downloaded',
  'install-progress': 'Installing',
  installed: 'Installed (not yet booted)',
  rebooting: 'Rebooting',
  healthy: 'Healthy',
  'rolled-back': 'Rolled back',
  failed: 'Failed',
  drift: 'Drift detected',
  'local-install': 'Local install',
  'hook-output': 'Hook output',
  log: 'Log',
};
const KIND_TONE = {
  healthy: 'healthy',
  'rolled-back': 'rolled-back',
  failed: 'failed',
  'offer-rejected': 'failed',
  installed: 'installed',
  offered: 'offered',
};

function Progress({ p }) {
  if (!p?.total) return null;
  const percent = Math.floor((100 * p.done) / p.total);
  return html`<span class="muted"> ${percent}% (${bytes(p.done)} of ${bytes(p.total)})</span>`;
}

function DetailList({ detail }) {
  if (!detail || typeof detail !== 'object')
    return detail ? html`<span class="muted"> ${String(detail)}</span>` : null;
  const entries = Object.entries(detail).filter(([, v]) => v !== null && v !== '');
  if (!entries.length) return null;
  return html`<span class="muted"> ${entries.map(([k, v]) => `${k}: ${v}`).join(' · ')}</span>`;
}

function Slots({ device, inventory }) {
  const slots = inventory?.slots;
  if (!slots) return html`<p class="muted">No inventory reported yet.</p>`;
  return html`<table>
    <caption>Slots</caption>
    <thead><tr><th scope="col">Slot</th><th scope="col">Role</th><th scope="col">Version</th><th scope="col">Image</th><th scope="col">Size</th></tr></thead>
    <tbody>
      ${slots.map(
        (s) => html`<tr class=${s.name === device.activeSlot ? 'active-slot' : ''}>
          <th scope="row">${s.name}</th>
          <td>${s.name === device.activeSlot ? html`<${Badge} value="healthy" label="active (booted)" />` : 'inactive'}</td>
          <td>${s.version ?? '—'}</td>
          <td><code title=${s.imageSha256 ?? ''}>${shortHash(s.imageSha256)}</code></td>
          <td>${bytes(s.size)}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

export function DevicePage({ session, id }) {
  const mine = (ev) => ev.type.startsWith('device') && (ev.data?.deviceId === id || ev.data?.id === id);
  const dev = useResource(() => api.device(id), [id], mine);
  const inv = useResource(() => api.deviceInventory(id), [id], mine);
  const events = useResource(() => api.deviceEvents(id), [id], mine);
  const rollouts = useResource(
    () => api.rollouts(),
    [],
    (ev) => ev.type === 'rollout.created',
  );
  const rolloutById = new Map((rollouts.data?.items ?? []).map((r) => [r.id, r]));
  const deps = useResource(
    () => api.deviceDeployments(id),
    [id],
    (ev) => mine(ev) || ev.type.startsWith('rollout'),
  );
  const d = dev.data;
  const timeline = buildTimeline(
    events.data?.items ?? [],
    (deps.data?.items ?? []).map((x) => ({
      ...x,
      rolloutName: rolloutById.get(x.rolloutId)?.name,
      release: rolloutById.get(x.rolloutId)?.release,
    })),
  );
  const lastRollback = timeline.find((r) => r.kind === 'rolled-back' || r.kind === 'failed');
  return html`<section aria-labelledby="device-h">
    <p class="crumbs"><a href=${link.devices()}>Devices</a> ›</p>
    <h1 id="device-h" tabindex="-1">Device ${id}</h1>
    <${ErrorBox} error=${dev.error} />
    ${
      !d
        ? dev.error
          ? null
          : html`<${Loading} what="the device" />`
        : html`
          <dl class="facts">
            <div><dt>Status</dt><dd><${Badge} value=${d.status} /></dd></div>
            <div><dt>Connection</dt><dd><${Badge} value=${d.online ? 'online' : 'offline'} /> <span class="muted">last seen <${Time} t=${d.lastSeen} /></span></dd></div>
            <div><dt>Version</dt><dd data-field="version">${d.version ?? '—'}</dd></div>
            <div><dt>Agent state</dt><dd><${Badge} value=${d.agentState} /></dd></div>
            <div><dt>Hardware</dt><dd>${d.hardware ?? '—'}</dd></div>
            <div><dt>Channel / group</dt><dd>${d.channel ?? '—'} / ${d.group ?? '—'}</dd></div>
            <div><dt>Tags</dt><dd>${d.tags?.length ? d.tags.join(', ') : '—'}</dd></div>
            <div><dt>Security version</dt><dd>${d.securityVersion ?? '—'}</dd></div>
          </dl>
          ${
            d.lastError && d.lastError.message !== lastRollback?.reason?.message
              ? html`<div class="callout callout-bad" role="note"><strong>Last error:</strong> ${d.lastError.message} <code>${d.lastError.code}</code></div>`
              : null
          }
          ${
            lastRollback?.reason
              ? html`<div class="callout callout-bad" data-testid="rollback-reason">
                <strong>${KIND_TEXT[lastRollback.kind]}${lastRollback.version ? ` from ${lastRollback.version}` : ''}:</strong> ${lastRollback.reason.message}${' '}
                <code>${lastRollback.reason.code}</code> <${Time} t=${lastRollback.t} />
              </div>`
              : null
          }
          ${
            d.status === 'pending'
              ? html`<p><${ActionButton} session=${session} label=${`Accept ${d.id}`} onAction=${() => api.acceptDevice(d.id).then(dev.reload)} /></p>`
              : null
          }
          <${Slots} device=${d} inventory=${inv.data?.inventory} />
          <${PlacementForm} key=${d.id} session=${session} device=${d} onSaved=${dev.reload} />
        `
    }
    <section aria-labelledby="timeline-h">
      <h2 id="timeline-h">Timeline</h2>
      <${ErrorBox} error=${events.error} />
      ${events.data && timeline.length === 0 ? html`<p class="muted">No events yet.</p>` : null}
      <ol class="timeline">
        ${timeline.map(
          (r) => html`<li class=${`tl tl-${KIND_TONE[r.kind] ?? 'neutral'}`} data-kind=${r.kind}>
            <time datetime=${iso(r.t)} title=${iso(r.t)}>${iso(r.t).replace('T', ' ').slice(0, 19)}</time>
            <span class="tl-kind">${KIND_TEXT[r.kind] ?? r.kind}</span>
            ${r.version ? html` <span>${r.version}</span>` : null}
            <${Progress} p=${r.progress} />
            ${r.reason ? html`<span class="tl-reason">: ${r.reason.message} <code>${r.reason.code}</code></span>` : null}
            ${r.kind === 'offered' ? html`<span class="muted"> by rollout ${r.detail}</span>` : html`<${DetailList} detail=${r.detail} />`}
          </li>`,
        )}
      </ol>
    </section>
    <section aria-labelledby="deps-h">
      <h2 id="deps-h">Deployments</h2>
      <${ErrorBox} error=${deps.error} />
      ${
        deps.data?.items?.length
          ? html`<table>
            <thead><tr><th scope="col">Rollout</th><th scope="col">Release</th><th scope="col">Phase</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Reason</th></tr></thead>
            <tbody>
              ${deps.data.items.map(
                (x) => html`<tr>
                  <th scope="row"><a href=${link.rollout(x.rolloutId)}>${rolloutById.get(x.rolloutId)?.name ?? x.rolloutId}</a></th>
                  <td>${rolloutById.get(x.rolloutId)?.release ?? '—'}</td>
                  <td>${x.phase + 1}</td>
                  <td><${Badge} value=${x.state} /></td>
                  <td>${x.attempts}</td>
                  <td>${x.failureReason ?? ''}</td>
                </tr>`,
              )}
            </tbody>
          </table>`
          : deps.data
            ? html`<p class="muted">This device has not been part of a rollout.</p>`
            : null
      }
    </section>
  </section>`;
}
