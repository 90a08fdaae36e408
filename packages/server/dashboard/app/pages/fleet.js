import { api } from '../api.js';
import { ActionButton, ErrorBox, Loading, Time } from '../components/ui.js';
import { VersionChart } from '../components/version-chart.js';
import { versionPoints } from '../history.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const isDeviceEvent = (ev) => ev.type.startsWith('device');
const HISTORY_HOURS = 72;

function CountTable({ caption, rows, keyName, hrefOf }) {
  const total = rows.reduce((a, r) => a + r.count, 0) || 1;
  return html`<table class="counts">
    <caption>${caption}</caption>
    <thead><tr><th scope="col">${keyName}</th><th scope="col">Devices</th><th scope="col"><span class="sr-only">Share</span></th></tr></thead>
    <tbody>
      ${rows.length === 0 ? html`<tr><td colspan="3" class="muted">none</td></tr>` : null}
      ${rows.map(
        (r) => html`<tr>
          <th scope="row">${hrefOf ? html`<a href=${hrefOf(r.key)}>${r.label ?? r.key ?? '—'}</a>` : (r.label ?? r.key ?? '—')}</th>
          <td class="num">${r.count}</td>
          <td class="barcell"><span class="bar" style=${`width:${(100 * r.count) / total}%`} aria-hidden="true"></span></td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

export function FleetPage({ session }) {
  // Fleet totals read up to 1,000 devices: refresh at most every 2 s however busy the fleet is.
  const summary = useResource(() => api.fleetSummary(), [], isDeviceEvent, { minIntervalMs: 2000 });
  const pending = useResource(() => api.devices({ status: 'pending', limit: 50 }), [], isDeviceEvent);
  // The server's samples come every few minutes: reload them now and then, not on every report.
  const samples = useResource(() => api.versionHistory(HISTORY_HOURS), [], isDeviceEvent, {
    minIntervalMs: 10_000,
  });
  const s = summary.data;
  const history = s && samples.data ? versionPoints(samples.data.items, s.byVersion) : null;
  return html`<section aria-labelledby="fleet-h">
    <h1 id="fleet-h" tabindex="-1">Fleet overview</h1>
    <${ErrorBox} error=${summary.error} />
    ${
      !s
        ? html`<${Loading} what="the fleet" />`
        : html`
          <ul class="stats" aria-label="Fleet totals">
            <li><span class="stat-n" data-stat="accepted">${s.accepted}</span> devices</li>
            <li><span class="stat-n ok" data-stat="online">${s.online}</span> online</li>
            <li><span class="stat-n" data-stat="offline">${s.offline}</span> offline</li>
            <li><a href=${link.devices({ status: 'pending' })}><span class="stat-n warn" data-stat="pending">${s.pending}</span> awaiting acceptance</a></li>
          </ul>
          <div class="grid3">
            <${CountTable}
              caption="By version"
              keyName="Version"
              rows=${s.byVersion.map((r) => ({ key: r.version, label: r.version ?? 'unknown', count: r.count }))}
              hrefOf=${(v) => (v ? link.devices({ version: v }) : null)}
            />
            <${CountTable}
              caption="By agent state"
              keyName="State"
              rows=${s.byAgentState.map((r) => ({ key: r.state, label: r.state ?? 'unknown', count: r.count }))}
            />
            <${CountTable}
              caption="By hardware"
              keyName="Hardware"
              rows=${s.byHardware.map((r) => ({ key: r.hardware, label: r.hardware ?? 'unknown', count: r.count }))}
              hrefOf=${(hw) => (hw ? link.devices({ hardware: hw }) : null)}
            />
          </div>
        `
    }
    <section aria-labelledby="history-h">
      <h2 id="history-h">Versions over time</h2>
      <${ErrorBox} error=${samples.error} />
      ${history ? html`<${VersionChart} points=${history} />` : html`<${Loading} what="history" />`}
      <p class="hint">The last ${HISTORY_HOURS} hours as sampled by the server${samples.data ? ` every ${Math.round(samples.data.intervalMs / 1000)} s` : ''}; Prometheus keeps longer history (<code>flotilla_devices_by_version</code>).</p>
    </section>
    <section aria-labelledby="pending-h">
      <h2 id="pending-h">Devices awaiting acceptance</h2>
      <${ErrorBox} error=${pending.error} />
      ${pending.data?.items?.length === 0 ? html`<p class="muted">None.</p>` : null}
      ${
        pending.data?.items?.length
          ? html`<table>
            <thead><tr><th scope="col">Device</th><th scope="col">Hardware</th><th scope="col">Asked</th><th scope="col">Action</th></tr></thead>
            <tbody>
              ${pending.data.items.map(
                (d) => html`<tr>
                  <th scope="row"><a href=${link.device(d.id)}>${d.id}</a></th>
                  <td>${d.hardware ?? '—'}</td>
                  <td><${Time} t=${d.created} /></td>
                  <td><${ActionButton} session=${session} label=${`Accept ${d.id}`} onAction=${() => api.acceptDevice(d.id).then(pending.reload)} /></td>
                </tr>`,
              )}
            </tbody>
          </table>`
          : null
      }
    </section>
  </section>`;
}
