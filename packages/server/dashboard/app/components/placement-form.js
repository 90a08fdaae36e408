import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { html } from '../html.js';
import { ActionButton } from './ui.js';

const CHANNELS = ['dev', 'staging', 'prod'];
const splitTags = (text) => [...new Set(text.split(/[\s,]+/).filter(Boolean))];

/** Edits what rollouts target a device by: its tags, group and channel (operator; audited by the server). */
export function PlacementForm({ session, device, onSaved }) {
  const [tags, setTags] = useState(device.tags.join(', '));
  const [group, setGroup] = useState(device.group ?? '');
  const [channel, setChannel] = useState(device.channel);
  const save = () =>
    api
      .setPlacement(device.id, { tags: splitTags(tags), group: group.trim() || null, channel })
      .then(onSaved);
  return html`<form class="placement" aria-labelledby="placement-h" onSubmit=${(e) => e.preventDefault()}>
    <h2 id="placement-h">Tags, group and channel</h2>
    <label>Tags <span class="muted">(comma separated)</span>
      <input name="tags" value=${tags} onInput=${(e) => setTags(e.currentTarget.value)} />
    </label>
    <label>Group
      <input name="group" value=${group} onInput=${(e) => setGroup(e.currentTarget.value)} />
    </label>
    <label>Channel
      <select name="channel" value=${channel} onChange=${(e) => setChannel(e.currentTarget.value)}>
        ${CHANNELS.map((c) => html`<option value=${c}>${c}</option>`)}
      </select>
    </label>
    <${ActionButton} session=${session} label="Save placement" onAction=${save} />
  </form>`;
}
