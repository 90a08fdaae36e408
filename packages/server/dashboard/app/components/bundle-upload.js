import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { bytes } from '../format.js';
import { html } from '../html.js';
import { ActionButton } from './ui.js';

/**
 * Uploads a signed `.flot` bundle (operator). The server verifies it against its trust root as
 * it streams in; the bar shows the bytes sent, then "verifying" until the server answers.
 */
export function BundleUpload({ session, onUploaded }) {
  const [file, setFile] = useState(null);
  const [sent, setSent] = useState(null);
  const [done, setDone] = useState(null);
  const upload = async () => {
    if (!file) throw new Error('choose a .flot bundle first');
    setDone(null);
    setSent({ loaded: 0, total: file.size });
    try {
      const r = await api.uploadBundle(file, (loaded, total) => setSent({ loaded, total }));
      setDone(r);
      onUploaded?.(r.release);
    } finally {
      setSent(null);
    }
  };
  const percent = sent ? Math.floor((100 * sent.loaded) / (sent.total || 1)) : 0;
  return html`<form class="upload" aria-labelledby="upload-h" onSubmit=${(e) => e.preventDefault()}>
    <h2 id="upload-h">Upload a release bundle</h2>
    <label>Bundle file (.flot)
      <input type="file" name="bundle" accept=".flot,application/vnd.flotilla.bundle" onChange=${(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
    </label>
    <${ActionButton} session=${session} label="Upload bundle" onAction=${upload} />
    ${
      sent
        ? html`<div class="progress-line" data-testid="upload-progress">
            <progress max="100" value=${percent} aria-label="Upload progress">${percent}%</progress>
            <span>${percent < 100 ? `${bytes(sent.loaded)} of ${bytes(sent.total)} sent (${percent}%)` : 'sent; the server verifies the signatures…'}</span>
          </div>`
        : null
    }
    ${
      done
        ? html`<p class="callout callout-ok" role="status" data-testid="upload-done">
            ${done.created ? 'Uploaded' : 'Already there'}: release <strong>${done.release.version}</strong> (${bytes(done.release.image?.size)} image), verified against the server's trust root.
          </p>`
        : null
    }
  </form>`;
}
