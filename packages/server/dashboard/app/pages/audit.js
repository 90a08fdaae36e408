import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Loading, roleAllows, Time } from '../components/ui.js';
import { actorName } from '../format.js';
import { html } from '../html.js';
import { useResource } from '../use-resource.js';

/** A short, readable form of an entry's detail (the full JSON is in its title). */
function detailText(detail) {
  const entries = Object.entries(detail ?? {}).filter(([k]) => k !== 'policy');
  return entries.map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
}

/** The audit log, newest first, a page at a time (admin: the server refuses other roles). */
export function AuditPage({ session }) {
  const [before, setBefore] = useState([undefined]);
  const cursor = before[before.length - 1];
  const allowed = roleAllows(session.role, 'admin');
  const res = useResource(
    () => (allowed ? api.audit(cursor) : Promise.resolve(null)),
    [cursor, allowed],
    // Changes are audited as they happen: rollouts, releases, devices, tokens.
    (ev) => !ev.type.startsWith('device.') && cursor === undefined,
    { minIntervalMs: 2000 },
  );
  const items = res.data?.items ?? [];
  return html`<section aria-labelledby="audit-h">
    <h1 id="audit-h" tabindex="-1">Audit log</h1>
    ${
      allowed
        ? null
        : html`<p class="readonly" role="note">The audit log is for admins: a ${session.role} token may not read it (the server answers 403).</p>`
    }
    <${ErrorBox} error=${res.error} />
    ${allowed && res.loading && !res.data ? html`<${Loading} what="the audit log" />` : null}
    ${
      items.length
        ? html`<table class="audit">
            <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Detail</th></tr></thead>
            <tbody>
              ${items.map(
                (e) => html`<tr data-action=${e.action}>
                  <td><${Time} t=${e.ts} /></td>
                  <td>${actorName(e.actor)}</td>
                  <th scope="row">${e.action}</th>
                  <td>${e.target ?? '—'}</td>
                  <td class="muted" title=${JSON.stringify(e.detail)}>${detailText(e.detail)}</td>
                </tr>`,
              )}
            </tbody>
          </table>
          <nav class="pager" aria-label="Pages of the audit log">
            ${before.length > 1 ? html`<button type="button" class="btn btn-quiet" onClick=${() => setBefore(before.slice(0, -1))}>Newer entries</button>` : null}
            ${items.length === 100 ? html`<button type="button" class="btn btn-quiet" onClick=${() => setBefore([...before, items[items.length - 1].id])}>Older entries</button>` : null}
          </nav>`
        : res.data
          ? html`<p class="muted">Nothing audited yet.</p>`
          : null
    }
  </section>`;
}
