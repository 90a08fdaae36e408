import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { onLive } from './live.js';

/**
 * Loads data with `load()` and reloads it whenever a live event passes `matches(event)` (and after
 * every stream reconnect). At most one load runs at a time; events arriving meanwhile cause one
 * more load afterwards (at least `minIntervalMs` later), so a burst of device events costs a
 * couple of requests, not hundreds.
 */
export function useResource(load, deps, matches = () => true, { minIntervalMs = 300 } = {}) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const running = useRef(false);
  const again = useRef(false);
  // Bumped when deps change or the component goes away: late answers for an old generation are dropped.
  const generation = useRef(0);
  const loadRef = useRef(load);
  const matchRef = useRef(matches);
  loadRef.current = load;
  matchRef.current = matches;

  const reload = useCallback(async () => {
    if (running.current) {
      again.current = true;
      return;
    }
    running.current = true;
    let first = true;
    do {
      // Follow-up loads wait a little: a fleet-wide burst of events becomes a few loads a second.
      if (!first) await new Promise((r) => setTimeout(r, minIntervalMs));
      first = false;
      again.current = false;
      const gen = generation.current;
      try {
        const data = await loadRef.current();
        if (gen === generation.current) setState({ data, error: null, loading: false });
      } catch (error) {
        if (gen === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
      }
    } while (again.current);
    running.current = false;
  }, []);

  // The caller's deps decide when to start over.
  useEffect(() => {
    const gen = ++generation.current;
    setState({ data: null, error: null, loading: true });
    reload();
    const off = onLive((ev) => {
      if (ev.type === 'resync' || matchRef.current(ev)) reload();
    });
    return () => {
      if (generation.current === gen) generation.current++;
      off();
    };
  }, deps);

  return { ...state, reload };
}
