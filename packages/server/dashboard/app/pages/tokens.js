import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ActionButton, Badge, ErrorBox, Loading, roleAllows, Time } from '../components/ui.js';
import { html } from '../html.js';
import { useResource } from '../use-resource.js';

const ROLES = ['viewer', 'operator', 'admin'];

/** API tokens (admin): create one (its secret is shown once), list them, revoke one. */
export function TokensPage({ session }) {
  const allowed = roleAllows(session.role, 'admin');
  const res = useResource(() => (allowed ? api.tokens() : Promise.resolve(null)), [allowed]);
  const [name, setName] = useState('');
  const [role, setRole] = useState('viewer');
  const [created, setCreated] = useState(null);
  const create = async () => {
    const t = await api.createToken(name.trim(), role);
    setCreated(t);
    setName('');
    res.reload();
  };
  const items = res.data?.items ?? [];
  return html`<section aria-labelledby="tokens-h">
    <h1 id="tokens-h" tabindex="-1">API tokens</h1>
    ${
      allowed
        ? null
        : html`<p class="readonly" role="note">Tokens are managed by admins: a ${session.role} token may not list or create them.</p>`
    }
    <form class="token-form" aria-labelledby="new-token-h" onSubmit=${(e) => e.preventDefault()}>
      <h2 id="new-token-h">New token</h2>
      <label>Token name <input value=${name} maxlength="64" onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <label>Role
        <select value=${role} onChange=${(e) => setRole(e.currentTarget.value)}>
          ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
        </select>
      </label>
      <${ActionButton} session=${session} need="admin" label="Create token" onAction=${create} />
    </form>
    ${
      created
        ? html`<div class="callout callout-warn" role="status" data-testid="new-token">
            Token <strong>${created.name}</strong> (${created.role}) — copy it now, it is not shown again:
            <code class="secret">${created.token}</code>
          </div>`
        : null
    }
    <${ErrorBox} error=${res.error} />
    ${allowed && res.loading && !res.data ? html`<${Loading} what="tokens" />` : null}
    ${
      items.length
        ? html`<table>
            <thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">State</th><th scope="col">Action</th></tr></thead>
            <tbody>
              ${items.map(
                (t) => html`<tr data-token=${t.name}>
                  <th scope="row">${t.name} <code class="muted">${t.id}</code></th>
                  <td>${t.role}</td>
                  <td><${Time} t=${t.created} /></td>
                  <td><${Time} t=${t.lastUsed} /></td>
                  <td>${t.revoked ? html`<${Badge} value="rejected" label="revoked" />` : html`<${Badge} value="accepted" label="active" />`}</td>
                  <td>
                    ${
                      t.revoked || t.id === session.id
                        ? null
                        : html`<${ActionButton}
                            session=${session}
                            need="admin"
                            danger=${true}
                            label=${`Revoke ${t.name}`}
                            confirmText="Whoever uses this token is refused from now on. It cannot be undone."
                            onAction=${() => api.revokeToken(t.id).then(res.reload)}
                          />`
                    }
                  </td>
                </tr>`,
              )}
            </tbody>
          </table>`
        : null
    }
  </section>`;
}
