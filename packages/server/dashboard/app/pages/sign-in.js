import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox } from '../components/ui.js';
import { html } from '../html.js';

export function SignIn({ onSignedIn }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) {
      setError({ message: 'Paste an operator token first.' });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const who = await api.whoami(t);
      onSignedIn({ token: t, id: who.id, name: who.name, role: who.role });
    } catch (err) {
      setError(
        err.status === 401
          ? { message: 'This token is not valid (unknown, revoked or mistyped).', code: err.code }
          : err,
      );
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin" id="main">
    <h1>Flotilla</h1>
    <p class="muted">Sign in with an operator token. Viewer tokens see everything; operator and admin tokens may also act.</p>
    <form onSubmit=${submit} aria-describedby="token-help">
      <label for="token">API token</label>
      <input
        id="token"
        name="token"
        type="password"
        autocomplete="off"
        spellcheck="false"
        required
        value=${token}
        onInput=${(e) => setToken(e.currentTarget.value)}
      />
      <p id="token-help" class="hint">The first admin token is in the server's data directory: <code>cat .flotilla/server/admin-token</code>; an admin makes more on the Tokens page or with <code>flotilla tokens create --role operator --name alice</code> (role viewer, operator or admin; the secret is shown once). It stays in this browser tab only.</p>
      <button class="btn" type="submit" aria-disabled=${busy ? 'true' : 'false'}>${busy ? 'Signing in…' : 'Sign in'}</button>
      <${ErrorBox} error=${error} />
    </form>
  </main>`;
}
