import { cloneElement, toChildArray } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api } from '../api.js';
import { ActionButton, ErrorBox, roleAllows } from '../components/ui.js';
import { html } from '../html.js';
import { initialForm, newPhase, rolloutRequest } from '../rollout-request.js';
import { link } from '../router.js';
import { useResource } from '../use-resource.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const CHANNELS = ['dev', 'staging', 'prod'];
const PREVIEW_DELAY_MS = 300;

let fieldCount = 0;

/** A labelled control; `for`/`id` rather than nesting, so a select's name is not mixed with its value. */
function Field({ label, children, hint }) {
  const id = useMemo(() => `rf-${++fieldCount}`, []);
  return html`<div class="field">
    <label for=${id}>${label}${hint ? html` <span class="muted">${hint}</span>` : null}</label>
    ${cloneElement(toChildArray(children)[0], { id })}
  </div>`;
}

function PhaseFields({ p, i, last, update, remove }) {
  const set = (k) => (e) =>
    update({
      ...p,
      [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value,
    });
  const n = i + 1;
  return html`<fieldset class="phase-form" data-phase=${i}>
    <legend>Phase ${n}</legend>
    <${Field} label=${`Phase ${n} name`}><input value=${p.name} onInput=${set('name')} /></${Field}>
    ${
      last
        ? html`<p class="muted">The last phase takes every device left.</p>`
        : html`<${Field} label=${`Phase ${n} size by`}>
              <select value=${p.kind} onChange=${set('kind')}>
                <option value="count">number of devices</option>
                <option value="percent">percent of the target</option>
              </select>
            </${Field}>
            <${Field} label=${`Phase ${n} size`}><input type="number" min="0" step="any" value=${p.size} onInput=${set('size')} /></${Field}>`
    }
    <${Field} label=${`Phase ${n} success threshold (%)`}><input type="number" min="0" max="100" step="any" value=${p.successThreshold} onInput=${set('successThreshold')} /></${Field}>
    <${Field} label=${`Phase ${n} error threshold (%)`}><input type="number" min="0" max="100" step="any" value=${p.errorThreshold} onInput=${set('errorThreshold')} /></${Field}>
    <${Field} label=${`Phase ${n} judged after (devices)`}><input type="number" min="1" value=${p.minExecuted} onInput=${set('minExecuted')} /></${Field}>
    <${Field} label=${`Phase ${n} soak (seconds)`}><input type="number" min="0" value=${p.soakSeconds} onInput=${set('soakSeconds')} /></${Field}>
    <label class="check"><input type="checkbox" checked=${p.requireApproval} onChange=${set('requireApproval')} /> Phase ${n} needs an operator's approval to start</label>
    ${remove ? html`<button type="button" class="btn btn-quiet" onClick=${remove}>Remove phase ${n}</button>` : null}
  </fieldset>`;
}

function WindowFields({ w, i, update, remove }) {
  const n = i + 1;
  const toggle = (d) =>
    update({ ...w, days: w.days.includes(d) ? w.days.filter((x) => x !== d) : [...w.days, d] });
  return html`<fieldset class="window-form">
    <legend>Maintenance window ${n}</legend>
    <span class="days" role="group" aria-label=${`Window ${n} days`}>
      ${DAYS.map((d) => html`<label class="check"><input type="checkbox" checked=${w.days.includes(d)} onChange=${() => toggle(d)} /> ${d}</label>`)}
    </span>
    <${Field} label=${`Window ${n} opens at (HH:MM)`}><input value=${w.start} pattern="[0-2][0-9]:[0-5][0-9]" onInput=${(e) => update({ ...w, start: e.currentTarget.value })} /></${Field}>
    <${Field} label=${`Window ${n} length (minutes)`}><input type="number" min="1" value=${w.durationMinutes} onInput=${(e) => update({ ...w, durationMinutes: e.currentTarget.value })} /></${Field}>
    <${Field} label=${`Window ${n} UTC offset`}><input value=${w.utcOffset} onInput=${(e) => update({ ...w, utcOffset: e.currentTarget.value })} /></${Field}>
    <button type="button" class="btn btn-quiet" onClick=${remove}>Remove window ${n}</button>
  </fieldset>`;
}

/** What the server says the rollout would take now: devices in total and per phase (its own selection code). */
function Preview({ preview, error }) {
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!preview) return html`<p class="muted" role="status">Computing the preview…</p>`;
  return html`<div data-testid="rollout-preview" role="status">
    <p><strong>${preview.devices}</strong> device${preview.devices === 1 ? '' : 's'} would take ${preview.release} now (${preview.online} online)${preview.membership === 'dynamic' ? '; matching devices that appear later join too' : ''}${preview.downgrades ? `; ${preview.downgrades} of them go down a version` : ''}.</p>
    <table class="counts">
      <caption>Devices per phase</caption>
      <thead><tr><th scope="col">Phase</th><th scope="col">Devices</th></tr></thead>
      <tbody>
        ${preview.phases.map((p, i) => html`<tr data-phase=${i}><th scope="row">${i + 1}. ${p.name}</th><td class="num">${p.devices}</td></tr>`)}
      </tbody>
    </table>
  </div>`;
}

/** A rollout with its whole policy, previewed by the server as it is edited, then created (operator). */
export function NewRolloutPage({ session, query }) {
  const releases = useResource(
    () => api.releases(),
    [],
    (ev) => ev.type.startsWith('release'),
  );
  const [f, setF] = useState(() => initialForm(query.get('release')));
  const [preview, setPreview] = useState({ data: null, error: null });
  const set = (patch) => setF({ ...f, ...patch });
  const setTarget = (k) => (e) => set({ target: { ...f.target, [k]: e.currentTarget.value } });
  const body = rolloutRequest(f);
  const bodyKey = JSON.stringify(body);
  useEffect(() => {
    if (!f.release) return;
    let live = true;
    setPreview((p) => ({ data: p.data, error: null }));
    const t = setTimeout(() => {
      api
        .previewRollout(body)
        .then((data) => live && setPreview({ data, error: null }))
        .catch((error) => live && setPreview({ data: null, error }));
    }, PREVIEW_DELAY_MS);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [bodyKey]);
  const create = async () => {
    const r = await api.createRollout(body);
    location.hash = link.rollout(r.id);
  };
  const rollable = (releases.data?.items ?? []).filter((r) => r.kind === 'release');
  const updatePhase = (i) => (p) => set({ phases: f.phases.map((x, j) => (j === i ? p : x)) });
  const updateWindow = (i) => (w) => set({ windows: f.windows.map((x, j) => (j === i ? w : x)) });
  return html`<section aria-labelledby="new-rollout-h">
    <p class="crumbs"><a href=${link.rollouts()}>Rollouts</a> ›</p>
    <h1 id="new-rollout-h" tabindex="-1">New rollout</h1>
    ${roleAllows(session.role, 'operator') ? null : html`<p class="readonly" role="note">A ${session.role} token can preview a rollout but not create one.</p>`}
    <${ErrorBox} error=${releases.error} />
    <form class="rollout-form" onSubmit=${(e) => e.preventDefault()}>
      <fieldset>
        <legend>What to roll out</legend>
        <${Field} label="Rollout name" hint="(optional)"><input value=${f.name} onInput=${(e) => set({ name: e.currentTarget.value })} /></${Field}>
        <${Field} label="Release">
          <select value=${f.release} onChange=${(e) => set({ release: e.currentTarget.value })}>
            <option value="">choose a release</option>
            ${rollable.map((r) => html`<option value=${r.version}>${r.version}${r.channels?.length ? ` (${r.channels.join(', ')})` : ''}</option>`)}
          </select>
        </${Field}>
      </fieldset>
      <fieldset>
        <legend>Target devices</legend>
        <p class="muted">Empty fields match every accepted device the release is built for. Lists are comma separated.</p>
        <${Field} label="Hardware (any of)"><input value=${f.target.hardware} onInput=${setTarget('hardware')} /></${Field}>
        <${Field} label="Tags (all of)"><input value=${f.target.tags} onInput=${setTarget('tags')} /></${Field}>
        <${Field} label="Groups (any of)"><input value=${f.target.groups} onInput=${setTarget('groups')} /></${Field}>
        <${Field} label="Running versions (any of)"><input value=${f.target.versions} onInput=${setTarget('versions')} /></${Field}>
        <${Field} label="Device ids (only these)"><input value=${f.target.devices} onInput=${setTarget('devices')} /></${Field}>
        <span class="days" role="group" aria-label="Channels (any of)">
          Channels:
          ${CHANNELS.map(
            (c) =>
              html`<label class="check"><input type="checkbox" checked=${f.target.channels.includes(c)} onChange=${() =>
                set({
                  target: {
                    ...f.target,
                    channels: f.target.channels.includes(c)
                      ? f.target.channels.filter((x) => x !== c)
                      : [...f.target.channels, c],
                  },
                })} /> ${c}</label>`,
          )}
        </span>
        <${Field} label="Membership">
          <select value=${f.membership} onChange=${(e) => set({ membership: e.currentTarget.value })}>
            <option value="static">static: the devices matching at the start</option>
            <option value="dynamic">dynamic: matching devices keep joining</option>
          </select>
        </${Field}>
        ${
          f.membership === 'dynamic'
            ? html`<${Field} label="Devices that join later go to">
                <select value=${f.joinPhase} onChange=${(e) => set({ joinPhase: e.currentTarget.value })}>
                  <option value="current">the phase in progress</option>
                  <option value="last">the last phase</option>
                </select>
              </${Field}>
              <p class="muted">A dynamic rollout keeps running to take devices that match later: it never completes by itself (abort it when done).</p>`
            : null
        }
      </fieldset>
      <fieldset>
        <legend>Phases</legend>
        ${f.phases.map(
          (p, i) => html`<${PhaseFields}
            p=${p}
            i=${i}
            last=${i === f.phases.length - 1}
            update=${updatePhase(i)}
            remove=${f.phases.length > 1 ? () => set({ phases: f.phases.filter((_, j) => j !== i) }) : null}
          />`,
        )}
        <button type="button" class="btn btn-quiet" onClick=${() =>
          set({
            phases: [...f.phases.slice(0, -1), newPhase('', 'percent', 10), f.phases[f.phases.length - 1]],
          })}>Add a phase</button>
      </fieldset>
      <fieldset>
        <legend>Pace, windows and safety</legend>
        <${Field} label="Most devices updating at once"><input type="number" min="1" value=${f.maxConcurrent} onInput=${(e) => set({ maxConcurrent: e.currentTarget.value })} /></${Field}>
        <${Field} label="Most new offers per minute" hint="(empty: no limit)"><input type="number" min="1" value=${f.ratePerMinute} onInput=${(e) => set({ ratePerMinute: e.currentTarget.value })} /></${Field}>
        <${Field} label="Per-device timeout (seconds)"><input type="number" min="10" value=${f.deviceTimeoutSeconds} onInput=${(e) => set({ deviceTimeoutSeconds: e.currentTarget.value })} /></${Field}>
        <label class="check"><input type="checkbox" checked=${f.autoRollback} onChange=${(e) => set({ autoRollback: e.currentTarget.checked })} /> Roll back automatically: when the rollout pauses on errors or is aborted, offer the previous release to the devices it updated</label>
        ${f.windows.map(
          (w, i) =>
            html`<${WindowFields} w=${w} i=${i} update=${updateWindow(i)} remove=${() => set({ windows: f.windows.filter((_, j) => j !== i) })} />`,
        )}
        <button type="button" class="btn btn-quiet" onClick=${() =>
          set({
            windows: [
              ...f.windows,
              { days: ['sat', 'sun'], start: '02:00', durationMinutes: 240, utcOffset: '+00:00' },
            ],
          })}>Add a maintenance window</button>
        ${f.windows.length === 0 ? html`<p class="muted">No maintenance windows: offers may go out at any time.</p>` : null}
      </fieldset>
    </form>
    <section aria-labelledby="preview-h">
      <h2 id="preview-h">Preview</h2>
      ${f.release ? html`<${Preview} preview=${preview.data} error=${preview.error} />` : html`<p class="muted">Choose a release to see how many devices each phase takes.</p>`}
    </section>
    <div class="actions">
      <${ActionButton}
        session=${session}
        label="Create rollout"
        confirmText=${`Offers ${f.release || 'the release'} to ${preview.data ? `${preview.data.devices} devices` : 'the target'} as the phases allow, starting now. Pause or abort stop it; devices already updated keep the release.`}
        onAction=${create}
      />
    </div>
  </section>`;
}
