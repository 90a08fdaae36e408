import { api } from '../api.js';
import { Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const FILTERS = [
  { key: 'status', label: 'Status', options: ['', 'pending', 'accepted', 'rejected', 'decommissioned'] },
  {
    key: 'online',
    label: 'Connection',
    options: ['', 'true', 'false'],
    names: { true: 'online', false: 'offline' },
  },
];

export function DevicesPage({ query }) {
  const filter = Object.fromEntries(query.entries());
  const key = query.toString();
  const res = useResource(
    () => api.devices(filter),
    [key],
    (ev) => ev.type.startsWith('device'),
  );
  const setFilter = (k, v) => {
    const q = new URLSearchParams(query);
    if (v) q.set(k, v);
    else q.delete(k);
    location.hash = link.devices(Object.fromEntries(q.entries()));
  };
  const items = res.data?.items ?? [];
  return html`<section aria-labelledby="devices-h">
    <h1 id="devices-h" tabindex="-1">Devices</h1>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      ${FILTERS.map(
        (f) => html`<label>
          ${f.label}
          <select value=${filter[f.key] ?? ''} onChange=${(e) => setFilter(f.key, e.currentTarget.value)}>
            ${f.options.map((o) => html`<option value=${o}>${o === '' ? 'any' : (f.names?.[o] ?? o)}</option>`)}
          </select>
        </label>`,
      )}
      ${['version', 'hardware', 'tag', 'group']
        .filter((k) => filter[k])
        .map(
          (k) => html`<span class="chip">${k}: ${filter[k]}
            <button type="button" class="btn btn-link" aria-label=${`Remove the ${k} filter`} onClick=${() => setFilter(k, '')}>×</button></span>`,
        )}
    </form>
    <${ErrorBox} error=${res.error} />
    ${res.loading && !res.data ? html`<${Loading} what="devices" />` : null}
    ${
      res.data
        ? html`<p class="muted">${res.data.total} device${res.data.total === 1 ? '' : 's'}${res.data.total > items.length ? `, first ${items.length} shown` : ''}</p>
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th><th scope="col">Status</th><th scope="col">Connection</th><th scope="col">Version</th>
                <th scope="col">Agent state</th><th scope="col">Hardware</th><th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              ${items.map(
                (d) => html`<tr>
                  <th scope="row"><a href=${link.device(d.id)}>${d.id}</a></th>
                  <td><${Badge} value=${d.status} /></td>
                  <td><${Badge} value=${d.online ? 'online' : 'offline'} /></td>
                  <td>${d.version ?? '—'}</td>
                  <td><${Badge} value=${d.agentState} /></td>
                  <td>${d.hardware ?? '—'}</td>
                  <td><${Time} t=${d.lastSeen} /></td>
                </tr>`,
              )}
            </tbody>
          </table>`
        : null
    }
  </section>`;
}
