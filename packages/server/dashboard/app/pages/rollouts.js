import { api } from '../api.js';
import { TotalsBar } from '../components/rollout-bits.js';
import { Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

/** The list route has no phase summaries: fetch them for the newest rollouts. */
async function loadWithSummaries() {
  const list = await api.rollouts();
  const items = await Promise.all(list.items.map((r, i) => (i < 20 ? api.rollout(r.id).catch(() => r) : r)));
  return { items };
}

export function RolloutsPage() {
  const res = useResource(
    loadWithSummaries,
    [],
    (ev) => ev.type.startsWith('rollout') || ev.type.startsWith('deployment'),
  );
  const items = res.data?.items ?? [];
  return html`<section aria-labelledby="rollouts-h">
    <h1 id="rollouts-h" tabindex="-1">Rollouts</h1>
    <p><a class="btn" href=${link.newRollout()}>New rollout</a></p>
    <${ErrorBox} error=${res.error} />
    ${res.loading && !res.data ? html`<${Loading} what="rollouts" />` : null}
    ${res.data && items.length === 0 ? html`<p class="muted">No rollouts yet. Start one with “New rollout” or <code>flotilla rollout create</code>.</p>` : null}
    ${
      items.length
        ? html`<table>
          <thead><tr><th scope="col">Rollout</th><th scope="col">Release</th><th scope="col">Status</th><th scope="col">Phase</th><th scope="col">Progress</th><th scope="col">Created</th></tr></thead>
          <tbody>
            ${items.map((r) => {
              const s = r.summary;
              return html`<tr>
                <th scope="row"><a href=${link.rollout(r.id)}>${r.name ?? r.id}</a></th>
                <td>${r.release}</td>
                <td><${Badge} value=${r.status} /></td>
                <td>${s ? `${Math.max(0, s.currentPhase) + 1} of ${s.phases.length}` : '—'}</td>
                <td class="wide">${s ? html`<${TotalsBar} totals=${s.totals} label=${`Rollout ${r.name ?? r.id}`} /> <span class="muted">${s.totals.healthy}/${s.totals.devices} healthy</span>` : '—'}</td>
                <td><${Time} t=${r.created} /></td>
              </tr>`;
            })}
          </tbody>
        </table>`
        : null
    }
  </section>`;
}
