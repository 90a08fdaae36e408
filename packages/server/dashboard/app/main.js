import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, tokenStore } from './api.js';
import { html } from './html.js';
import { liveStatus, onLiveStatus, startLive, stopLive } from './live.js';
import { AuditPage } from './pages/audit.js';
import { DevicePage } from './pages/device.js';
import { DevicesPage } from './pages/devices.js';
import { FleetPage } from './pages/fleet.js';
import { ReleasesPage } from './pages/releases.js';
import { RolloutPage } from './pages/rollout.js';
import { NewRolloutPage } from './pages/rollout-new.js';
import { RolloutsPage } from './pages/rollouts.js';
import { SignIn } from './pages/sign-in.js';
import { TokensPage } from './pages/tokens.js';
import { VulnerabilitiesPage } from './pages/vulnerabilities.js';
import { link, useRoute } from './router.js';

const NAV = [
  { name: 'fleet', label: 'Fleet', href: link.fleet(), match: ['fleet'] },
  { name: 'devices', label: 'Devices', href: link.devices(), match: ['devices', 'device'] },
  {
    name: 'rollouts',
    label: 'Rollouts',
    href: link.rollouts(),
    match: ['rollouts', 'rollout', 'rollout-new'],
  },
  { name: 'releases', label: 'Releases', href: link.releases(), match: ['releases'] },
  {
    name: 'vulnerabilities',
    label: 'Vulnerabilities',
    href: link.vulnerabilities(),
    match: ['vulnerabilities'],
  },
  { name: 'audit', label: 'Audit', href: link.audit(), match: ['audit'] },
  { name: 'tokens', label: 'Tokens', href: link.tokens(), match: ['tokens'] },
];

const LIVE_TEXT = {
  live: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  denied: 'Live updates refused',
};

function LiveIndicator() {
  const [s, setS] = useState(liveStatus());
  useEffect(() => onLiveStatus(setS), []);
  return html`<span class=${`live live-${s}`} role="status" aria-live="polite" data-live=${s}>
    <span class="dot" aria-hidden="true"></span>${LIVE_TEXT[s] ?? s}
  </span>`;
}

function Page({ route, session }) {
  switch (route.name) {
    case 'fleet':
      return html`<${FleetPage} session=${session} />`;
    case 'devices':
      return html`<${DevicesPage} session=${session} query=${route.query} />`;
    case 'device':
      return html`<${DevicePage} session=${session} id=${route.id} />`;
    case 'rollouts':
      return html`<${RolloutsPage} session=${session} />`;
    case 'rollout':
      return html`<${RolloutPage} session=${session} id=${route.id} />`;
    case 'rollout-new':
      return html`<${NewRolloutPage} session=${session} query=${route.query} />`;
    case 'audit':
      return html`<${AuditPage} session=${session} />`;
    case 'tokens':
      return html`<${TokensPage} session=${session} />`;
    case 'releases':
      return html`<${ReleasesPage} session=${session} />`;
    case 'vulnerabilities':
      return html`<${VulnerabilitiesPage} session=${session} version=${route.id} />`;
    default:
      return html`<h1 tabindex="-1">Not found</h1><p>No page here. <a href=${link.fleet()}>Go to the fleet overview</a>.</p>`;
  }
}

function Shell({ session, onSignOut }) {
  const route = useRoute();
  const main = useRef(null);
  // The hash is the router's, so the skip link moves focus itself instead of jumping to #main.
  const skipToContent = (e) => {
    e.preventDefault();
    main.current?.querySelector('h1')?.focus();
  };
  // After navigating, focus the new page's heading so keyboard and screen-reader users start there.
  useEffect(() => {
    const h1 = main.current?.querySelector('h1');
    if (h1 && document.activeElement !== document.body) h1.focus();
  }, [route.name, route.id]);
  return html`
    <a class="skip" href="#main" onClick=${skipToContent}>Skip to content</a>
    <header class="top">
      <span class="brand">Flotilla</span>
      <nav aria-label="Main">
        <ul>
          ${NAV.map(
            (n) => html`<li>
              <a href=${n.href} aria-current=${n.match.includes(route.name) ? 'page' : undefined}>${n.label}</a>
            </li>`,
          )}
        </ul>
      </nav>
      <${LiveIndicator} />
      <span class="who">
        <span class="role-label">Signed in as</span> <strong>${session.name}</strong>
        <span class=${`role role-${session.role}`}>${session.role}</span>
      </span>
      <button type="button" class="btn btn-quiet" onClick=${onSignOut}>Sign out</button>
    </header>
    ${
      session.role === 'viewer'
        ? html`<p class="readonly" role="note">Read-only: you signed in with a viewer token, so actions are shown but refused.</p>`
        : null
    }
    <main id="main" ref=${main}>
      <${Page} route=${route} session=${session} />
    </main>
  `;
}

function App() {
  const [session, setSession] = useState(null);
  const [checking, setChecking] = useState(() => Boolean(tokenStore.get()));

  // A token kept from earlier in this tab is checked again: it may have been revoked.
  useEffect(() => {
    const token = tokenStore.get();
    if (!token) return;
    api
      .whoami(token)
      .then((who) => setSession({ token, id: who.id, name: who.name, role: who.role }))
      .catch(() => tokenStore.clear())
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    if (!session) return;
    startLive();
    return stopLive;
  }, [session]);

  if (checking) return html`<p class="boot" role="status">Checking your token…</p>`;
  if (!session)
    return html`<${SignIn}
      onSignedIn=${(s) => {
        tokenStore.set(s.token);
        setSession(s);
      }}
    />`;
  return html`<${Shell}
    session=${session}
    onSignOut=${() => {
      tokenStore.clear();
      setSession(null);
    }}
  />`;
}

const root = document.getElementById('app');
root.textContent = ''; // drop the static "Loading…" line; Preact does not adopt foreign DOM
render(html`<${App} />`, root);
