import { api } from '../api.js';
import { BundleUpload } from '../components/bundle-upload.js';
import { ActionButton, Badge, ErrorBox, Loading, Time } from '../components/ui.js';
import { bytes, pct, shortHash } from '../format.js';
import { html } from '../html.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const CHANNEL_ORDER = ['dev', 'staging', 'prod'];

/** The channel a release is promoted to next (dev → staging → prod), or null once in prod. */
function nextChannel(release) {
  const reached = CHANNEL_ORDER.findLastIndex((c) => release.channels?.includes(c));
  return CHANNEL_ORDER[reached + 1] ?? null;
}

/** Promote (operator; refused by the server if the release breaks the channel's policy), and start a rollout. */
function ReleaseActions({ session, release, reload }) {
  const to = nextChannel(release);
  return html`<span class="row-actions">
    ${
      to && release.kind === 'release'
        ? html`<${ActionButton}
            session=${session}
            label=${`Promote ${release.version} to ${to}`}
            confirmText=${`Devices following ${to} will be offered ${release.version} by rollouts that target ${to}; a promotion is not taken back.`}
            onAction=${() => api.promoteRelease(release.version, to).then(reload)}
          />`
        : null
    }
    ${release.kind === 'release' ? html`<a class="btn btn-quiet" href=${link.newRollout(release.version)}>Roll out ${release.version}</a>` : null}
  </span>`;
}

function Signatures({ manifest }) {
  const sigs = manifest?.signatures ?? [];
  if (!sigs.length) return html`<${Badge} value="failed" label="unsigned" />`;
  return html`<span title=${sigs.map((s) => s.keyid).join('\n')}>
    ${sigs.length} signature${sigs.length > 1 ? 's' : ''}: ${sigs.map((s) => html`<code>${s.keyid.slice(0, 8)}</code> `)}
  </span>`;
}

function DeltasTable({ deltas, releases }) {
  const byImage = new Map(releases.map((r) => [r.image?.sha256, r]));
  if (!deltas.length)
    return html`<p class="muted">No deltas built yet. They are built for the versions a rollout's devices actually run.</p>`;
  return html`<table>
    <caption>Deltas (full image is always the fallback)</caption>
    <thead><tr><th scope="col">From</th><th scope="col">To</th><th scope="col">Status</th><th scope="col">Delta size</th><th scope="col">Full size</th><th scope="col">Saving</th><th scope="col">Codec</th></tr></thead>
    <tbody>
      ${deltas.map((d) => {
        const from = byImage.get(d.from);
        const to = byImage.get(d.to);
        const full = to?.image?.size ?? null;
        return html`<tr>
          <th scope="row">${from?.version ?? html`<code>${shortHash(d.from)}</code>`}</th>
          <td>${to?.version ?? html`<code>${shortHash(d.to)}</code>`}</td>
          <td><${Badge} value=${d.status} />${d.error ? html` <span class="muted">${d.error}</span>` : null}</td>
          <td class="num">${bytes(d.size)}</td>
          <td class="num">${bytes(full)}</td>
          <td class="num">${d.size && full ? pct(100 - (100 * d.size) / full) : '—'}</td>
          <td>${d.codec ?? '—'}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

export function ReleasesPage({ session }) {
  const rel = useResource(
    () => api.releases(),
    [],
    (ev) => ev.type.startsWith('release'),
  );
  const del = useResource(
    () => api.deltas(),
    [],
    (ev) => ev.type.startsWith('delta') || ev.type.startsWith('release'),
  );
  const releases = rel.data?.items ?? [];
  return html`<section aria-labelledby="releases-h">
    <h1 id="releases-h" tabindex="-1">Releases</h1>
    <${BundleUpload} session=${session} onUploaded=${rel.reload} />
    <${ErrorBox} error=${rel.error} />
    ${rel.loading && !rel.data ? html`<${Loading} what="releases" />` : null}
    ${rel.data && !releases.length ? html`<p class="muted">No releases yet. Upload a bundle above or with <code>flotilla release upload</code>.</p>` : null}
    ${
      releases.length
        ? html`<table class="releases">
          <thead>
            <tr>
              <th scope="col">Version</th><th scope="col">Kind</th><th scope="col">Channels</th><th scope="col">Security version</th>
              <th scope="col">Hardware</th><th scope="col">Image</th><th scope="col">Signatures</th><th scope="col">SBOM</th><th scope="col">Created</th><th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            ${releases.map((r) => {
              const m = r.manifest?.signed;
              return html`<tr data-version=${r.version}>
                <th scope="row">${r.version} <a href=${link.vulnerabilities(r.version)} class="muted" aria-label=${`Vulnerabilities of ${r.version}`}>vulnerabilities</a></th>
                <td><${Badge} value=${r.kind === 'recovery' ? 'pending' : 'neutral'} label=${r.kind} /></td>
                <td>${CHANNEL_ORDER.filter((c) => r.channels?.includes(c)).map((c) => html`<${Badge} value="accepted" label=${c} /> `)}${r.channels?.length ? null : '—'}</td>
                <td class="num">${r.securityVersion}</td>
                <td>${r.compatible?.join(', ')}</td>
                <td>${m?.image?.format ?? ''} ${bytes(r.image?.size)} <code title=${r.image?.sha256}>${shortHash(r.image?.sha256)}</code></td>
                <td><${Signatures} manifest=${r.manifest} /></td>
                <td>
                  ${
                    r.sbom?.sha256
                      ? html`<a href=${api.artifactUrl(r.sbom.sha256)} download=${`sbom-${r.version}.json`} onClick=${(
                          e,
                        ) => {
                          e.preventDefault();
                          api
                            .downloadArtifact(r.sbom.sha256, `sbom-${r.version}.json`)
                            .catch((err) => window.alert(`${err.code}: ${err.message}`));
                        }} aria-label=${`Download the SBOM of ${r.version} (${m?.sbom?.format ?? 'CycloneDX'}, ${bytes(m?.sbom?.size)})`}>${m?.sbom?.format ?? 'SBOM'}</a> <span class="muted">${bytes(m?.sbom?.size)}</span>`
                      : '—'
                  }
                </td>
                <td><${Time} t=${r.created} /></td>
                <td><${ReleaseActions} session=${session} release=${r} reload=${rel.reload} /></td>
              </tr>`;
            })}
          </tbody>
        </table>`
        : null
    }
    <section aria-labelledby="deltas-h">
      <h2 id="deltas-h">Deltas</h2>
      <${ErrorBox} error=${del.error} />
      ${del.data ? html`<${DeltasTable} deltas=${del.data.items ?? []} releases=${releases} />` : null}
    </section>
  </section>`;
}
