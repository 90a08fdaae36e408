import { useEffect, useState } from 'preact/hooks';

/** Hash routes (#/rollouts/r1): the server serves one page, and links work without it knowing the routes. */
const ROUTES = [
  { name: 'fleet', re: /^\/?$/ },
  { name: 'devices', re: /^\/devices\/?$/ },
  { name: 'device', re: /^\/devices\/([^/]+)$/ },
  { name: 'rollouts', re: /^\/rollouts\/?$/ },
  { name: 'rollout-new', re: /^\/rollouts\/new$/ },
  { name: 'rollout', re: /^\/rollouts\/([^/]+)$/ },
  { name: 'releases', re: /^\/releases\/?$/ },
  { name: 'vulnerabilities', re: /^\/vulnerabilities\/?$/ },
  { name: 'vulnerabilities', re: /^\/vulnerabilities\/([^/]+)$/ },
  { name: 'audit', re: /^\/audit\/?$/ },
  { name: 'tokens', re: /^\/tokens\/?$/ },
];

export function parseRoute(hash) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m)
      return { name: r.name, id: m[1] ? decodeURIComponent(m[1]) : null, query: new URLSearchParams(query) };
  }
  return { name: 'not-found', id: null, query: new URLSearchParams(query) };
}

export function useRoute() {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

export const link = {
  fleet: () => '#/',
  devices: (q) => `#/devices${q ? `?${new URLSearchParams(q)}` : ''}`,
  device: (id) => `#/devices/${encodeURIComponent(id)}`,
  rollouts: () => '#/rollouts',
  newRollout: (release) => `#/rollouts/new${release ? `?release=${encodeURIComponent(release)}` : ''}`,
  rollout: (id) => `#/rollouts/${encodeURIComponent(id)}`,
  releases: () => '#/releases',
  audit: () => '#/audit',
  tokens: () => '#/tokens',
  vulnerabilities: (version) => `#/vulnerabilities${version ? `/${encodeURIComponent(version)}` : ''}`,
};
