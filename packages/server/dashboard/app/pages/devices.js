import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const PAGE_SIZE = 50;
const TEXT_FIELDS = [
  { key: 'q', label: 'Device id starts with' },
  { key: 'tag', label: 'Tag' },
  { key: 'group', label: 'Group' },
  { key: 'version', label: 'Version' },
  { key: 'hardware', label: 'Hardware' },
];
const SELECTS = [
  { key: 'status', label: 'Status', options: ['', 'pending', 'accepted', 'rejected', 'decommissioned'] },
  {
    key: 'online',
    label: 'Connection',
    options: ['', 'true', 'false'],
    names: { true: 'online', false: 'offline' },
  },
];
const KEYS = [...TEXT_FIELDS, ...SELECTS].map((f) => f.key);

/**
 * The device search: every filter and the paging run on the server (indexed; pages continue
 * from the last id with `after`), so it answers the same at 100,000 devices as at 10. The
 * filter lives in the address, so a search can be bookmarked or shared.
 */
export function DevicesPage({ query }) {
  const filter = Object.fromEntries(KEYS.filter((k) => query.get(k)).map((k) => [k, query.get(k)]));
  const key = new URLSearchParams(filter).toString();
  const [draft, setDraft] = useState(filter);
  const [draftKey, setDraftKey] = useState(key);
  // Cursors of the pages seen so far (undefined: the first page); reset by a new search.
  const [cursors, setCursors] = useState({ key, stack: [undefined] });
  if (draftKey !== key) {
    setDraft(filter);
    setDraftKey(key);
  }
  const stack = cursors.key === key ? cursors.stack : [undefined];
  const after = stack[stack.length - 1];
  const res = useResource(
    () => api.searchDevices({ ...filter, limit: PAGE_SIZE, after }),
    [key, after],
    (ev) => ev.type.startsWith('device'),
    { minIntervalMs: 2000 },
  );
  const search = (e) => {
    e.preventDefault();
    const q = Object.fromEntries(Object.entries(draft).filter(([, v]) => v !== '' && v !== undefined));
    location.hash = link.devices(q);
  };
  const page = res.data?.data;
  const items = page?.items ?? [];
  const first = (stack.length - 1) * PAGE_SIZE + 1;
  return html`<section aria-labelledby="devices-h">
    <h1 id="devices-h" tabindex="-1">Devices</h1>
    <form class="filters search" role="search" aria-label="Search devices" onSubmit=${search}>
      ${TEXT_FIELDS.map(
        (f) => html`<label>
          ${f.label}
          <input
            type="search"
            name=${f.key}
            value=${draft[f.key] ?? ''}
            onInput=${(e) => setDraft({ ...draft, [f.key]: e.currentTarget.value.trim() })}
          />
        </label>`,
      )}
      ${SELECTS.map(
        (f) => html`<label>
          ${f.label}
          <select name=${f.key} value=${draft[f.key] ?? ''} onChange=${(e) => setDraft({ ...draft, [f.key]: e.currentTarget.value })}>
            ${f.options.map((o) => html`<option value=${o}>${o === '' ? 'any' : (f.names?.[o] ?? o)}</option>`)}
          </select>
        </label>`,
      )}
      <button type="submit" class="btn">Search</button>
      ${key ? html`<a class="btn btn-quiet" href=${link.devices()}>Clear</a>` : null}
    </form>
    <${ErrorBox} error=${res.error} />
    ${res.loading && !page ? html`<${Loading} what="devices" />` : null}
    ${
      page
        ? html`<p class="muted" data-testid="search-summary" role="status">
            ${page.total === 0 ? 'No device matches.' : `Devices ${first}–${first + items.length - 1} of ${page.total}`}
            ${res.data.serverMs !== null ? html` · <span data-testid="server-ms">${res.data.serverMs.toFixed(1)} ms</span> on the server` : null}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th><th scope="col">Status</th><th scope="col">Connection</th><th scope="col">Version</th>
                <th scope="col">Agent state</th><th scope="col">Hardware</th><th scope="col">Group</th><th scope="col">Tags</th><th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              ${items.map(
                (d) => html`<tr data-device=${d.id}>
                  <th scope="row"><a href=${link.device(d.id)}>${d.id}</a></th>
                  <td><${Badge} value=${d.status} /></td>
                  <td><${Badge} value=${d.online ? 'online' : 'offline'} /></td>
                  <td>${d.version ?? '—'}</td>
                  <td><${Badge} value=${d.agentState} /></td>
                  <td>${d.hardware ?? '—'}</td>
                  <td>${d.group ?? '—'}</td>
                  <td>${d.tags?.length ? d.tags.join(', ') : '—'}</td>
                  <td><${Time} t=${d.lastSeen} /></td>
                </tr>`,
              )}
            </tbody>
          </table>
          <nav class="pager" aria-label="Pages of devices">
            ${
              stack.length > 1
                ? html`<button type="button" class="btn btn-quiet" onClick=${() => setCursors({ key, stack: stack.slice(0, -1) })}>Previous page</button>`
                : null
            }
            ${
              page.next
                ? html`<button type="button" class="btn btn-quiet" onClick=${() => setCursors({ key, stack: [...stack, page.next] })}>Next page</button>`
                : null
            }
          </nav>`
        : null
    }
  </section>`;
}
