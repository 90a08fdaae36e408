import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { actorName, shortHash } from '../format.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const SEVERITY_ORDER = ['critical', 'high', 'medium', 'low', 'unknown'];
const TONE = { critical: 'failed', high: 'failed', medium: 'pending', low: 'neutral', unknown: 'neutral' };
const rank = (s) => SEVERITY_ORDER.indexOf(s);
const violationCount = (n) => `${n} violation${n === 1 ? '' : 's'}`;

function Severity({ s }) {
  return html`<${Badge} value=${TONE[s] ?? 'neutral'} label=${s} />`;
}

/**
 * Releases in prod that fail the prod policy with the data loaded now (the alert of
 * flotilla_policy_prod_failures): each links to its findings. Devices keep running them.
 */
function ProdFailures({ failures }) {
  return html`<section aria-labelledby="prod-failures-h" data-testid="prod-failures">
    <h3 id="prod-failures-h">Prod releases failing policy</h3>
    ${
      failures.length
        ? html`<ul class="prod-failures">
          ${failures.map(
            (f) =>
              html`<li data-version=${f.version}><a href=${link.vulnerabilities(f.version)} aria-label=${`Release ${f.version}: ${violationCount(f.violations.length)} of the prod policy`}>${f.version}</a> <${Badge} value="failed" label=${violationCount(f.violations.length)} /> <span class="muted">${f.violations.slice(0, 3).join('; ')}${f.violations.length > 3 ? ` and ${f.violations.length - 3} more` : ''}</span></li>`,
          )}
        </ul>`
        : html`<p class="muted">None: every release in prod meets the prod policy.</p>`
    }
  </section>`;
}

/** Fleet view: critical/high findings across the images devices actually run, weighted by devices. */
function FleetExposure() {
  const fleet = useResource(
    () => api.vulnFleet(),
    [],
    (ev) =>
      ev.type.startsWith('vulns') ||
      ev.type.startsWith('release') ||
      ev.type.startsWith('policy') ||
      ev.type === 'device.state',
  );
  const status = useResource(
    () => api.vulnStatus(),
    [],
    (ev) => ev.type.startsWith('vulns'),
  );
  const images = fleet.data?.images ?? [];
  const exposed = fleet.data?.devicesExposed ?? {};
  return html`<section aria-labelledby="vuln-fleet-h">
    <h2 id="vuln-fleet-h">Across the fleet</h2>
    <${ErrorBox} error=${fleet.error ?? status.error} />
    ${
      status.data
        ? html`<p class="muted" data-testid="vuln-status">${status.data.records} records loaded${
            status.data.lastImport
              ? html`, last import <${Time} t=${status.data.lastImport.ts} />`
              : ' (none imported yet)'
          }.</p>`
        : null
    }
    <p>
      ${['critical', 'high'].map(
        (s) =>
          html`<span class="stat" data-severity=${s}><${Severity} s=${s} /> ${Object.values(exposed[s] ?? {}).reduce((a, b) => a + b, 0)} devices${
            exposed[s]?.prod ? html` (<strong>${exposed[s].prod} in prod</strong>)` : null
          }</span> `,
      )}
    </p>
    ${fleet.data ? html`<${ProdFailures} failures=${fleet.data.prodFailures ?? []} />` : null}
    ${fleet.loading && !fleet.data ? html`<${Loading} what="fleet exposure" />` : null}
    ${
      images.length
        ? html`<table class="vuln-fleet">
          <caption>Images devices run, most exposed first (critical findings × devices)</caption>
          <thead><tr><th scope="col">Release</th><th scope="col">Devices</th><th scope="col">Channels</th>${SEVERITY_ORDER.map((s) => html`<th scope="col">${s}</th>`)}</tr></thead>
          <tbody>
            ${images.map(
              (i) => html`<tr data-image=${i.image}>
                <th scope="row">${i.version ? html`<a href=${link.vulnerabilities(i.version)}>${i.version}</a>` : html`<code>${shortHash(i.image)}</code>`}</th>
                <td class="num">${i.devices}</td>
                <td>${Object.entries(i.channels)
                  .map(([c, n]) => `${c} ${n}`)
                  .join(', ')}</td>
                ${SEVERITY_ORDER.map((s) => html`<td class="num">${i.bySeverity[s] ?? 0}</td>`)}
              </tr>`,
            )}
          </tbody>
        </table>`
        : fleet.data
          ? html`<p class="muted">No accepted device reports an image yet.</p>`
          : null
    }
  </section>`;
}

const COLUMNS = [
  ['severity', 'Severity', (a, b) => rank(a.severity) - rank(b.severity)],
  ['id', 'Record', (a, b) => a.id.localeCompare(b.id)],
  ['package', 'Package', (a, b) => a.package.localeCompare(b.package)],
  ['installed', 'Installed', () => 0],
  ['fixed', 'Fixed in', (a, b) => (a.fixed ? 0 : 1) - (b.fixed ? 0 : 1)],
];

/** One release: its findings (sortable, with the channels a waiver covers them in) and promotions. */
function ReleaseVulns({ version }) {
  const [sort, setSort] = useState({ key: 'severity', dir: 1 });
  const res = useResource(
    () => api.releaseVulns(version),
    [version],
    (ev) => ev.type.startsWith('vulns'),
  );
  const promos = useResource(
    () => api.releasePromotions(version),
    [version],
    (ev) => ev.type.startsWith('release'),
  );
  const rows = [...(res.data?.vulnerabilities ?? [])];
  const cmp = COLUMNS.find((c) => c[0] === sort.key)?.[2] ?? (() => 0);
  rows.sort((a, b) => sort.dir * cmp(a, b) || rank(a.severity) - rank(b.severity));
  const header = ([key, label]) => {
    const active = sort.key === key;
    return html`<th scope="col" aria-sort=${active ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'}>
      <button type="button" class="link" onClick=${() => setSort({ key, dir: active ? -sort.dir : 1 })}>${label}</button>
    </th>`;
  };
  return html`<section aria-labelledby="release-vulns-h">
    <h2 id="release-vulns-h">Release ${version}</h2>
    <${ErrorBox} error=${res.error} />
    ${res.loading && !res.data ? html`<${Loading} what="findings" />` : null}
    ${
      res.data
        ? html`<p>
          ${Object.entries(res.data.channels).map(
            ([c, e]) =>
              html`<span class="stat" data-channel=${c}>${c}: <${Badge} value=${e.pass ? 'accepted' : 'failed'} label=${e.pass ? 'passes policy' : violationCount(e.violations.length)} /></span> `,
          )}
          <span class="muted">policy version ${res.data.policyVersion}, scanned <${Time} t=${res.data.scannedAt} /></span>
        </p>
        ${
          rows.length
            ? html`<table class="vulns" data-testid="release-vulns">
              <thead><tr>${COLUMNS.map(header)}<th scope="col">Aliases</th><th scope="col">Waived in</th></tr></thead>
              <tbody>
                ${rows.map(
                  (v) => html`<tr data-id=${v.id}>
                    <td><${Severity} s=${v.severity} />${v.score !== null ? html` <span class="muted">${v.score}</span>` : null}</td>
                    <th scope="row" title=${v.summary ?? ''}>${v.id}</th>
                    <td>${v.package}${v.sourcePackage !== v.package ? html` <span class="muted">(${v.sourcePackage})</span>` : null}</td>
                    <td><code>${v.installed}</code></td>
                    <td>${v.fixed ? html`<code>${v.fixed}</code>` : html`<span class="muted">no fix</span>`}</td>
                    <td>${v.aliases.join(', ')}</td>
                    <td>${v.waivedIn.length ? v.waivedIn.join(', ') : '—'}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
            : html`<p class="muted">No known vulnerabilities in this release's ${res.data.packages} packages.</p>`
        }`
        : null
    }
    <h3>Promotions</h3>
    ${
      promos.data?.items?.length
        ? html`<table class="promotions">
          <thead><tr><th scope="col">When</th><th scope="col">From → to</th><th scope="col">Who</th><th scope="col">Policy</th><th scope="col">Scan</th><th scope="col">Override</th></tr></thead>
          <tbody>
            ${promos.data.items.map(
              (p) => html`<tr>
                <td><${Time} t=${p.ts} /></td>
                <td>${p.from ?? '—'} → ${p.to}</td>
                <td>${actorName(p.actor)}</td>
                <td>v${p.policyVersion}</td>
                <td><${Badge} value=${p.scan.result === 'pass' ? 'accepted' : 'failed'} label=${p.scan.result} /> ${p.scan.findings} findings</td>
                <td>${p.overrideReason ?? '—'}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
        : html`<p class="muted">Not promoted yet.</p>`
    }
  </section>`;
}

export function VulnerabilitiesPage({ version }) {
  return html`<section aria-labelledby="vulns-h">
    <h1 id="vulns-h" tabindex="-1">Vulnerabilities</h1>
    ${version ? html`<${ReleaseVulns} version=${version} />` : html`<${FleetExposure} />`}
  </section>`;
}
