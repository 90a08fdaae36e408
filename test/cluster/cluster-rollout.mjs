// The staged rollout of `cluster-test` and the faults it survives: mid-rollout the node holding
// the rollout engine is SIGKILLed (the time until another node holds it is measured) and, in the
// last phase, another node. Every wait is bounded; the rollout's own state decides the outcome.

const TERMINAL = new Set(['completed', 'aborted', 'failed']);

/**
 * 1.1.0 to every device in three phases: a canary (5 %, at least one), then 30 %, then the rest.
 * @param {import('@flotilla/fleet-simulator').ServerHandle} api
 * @param {number} devices  at least 3
 */
export function startRollout(api, devices) {
  const canary = Math.max(1, Math.round(devices * 0.05));
  const second = Math.max(1, Math.min(devices - canary - 1, Math.round(devices * 0.3)));
  return api.startRollout({
    name: 'cluster-test 1.1.0',
    release: '1.1.0',
    phases: [
      { name: 'canary', count: canary, errorThreshold: 0 },
      { name: '30%', count: second, errorThreshold: 5 },
      { name: 'rest', percent: 100, errorThreshold: 5 },
    ],
    maxConcurrent: Math.max(10, Math.min(100, devices)),
  });
}

/** The node `GET /api/v1/cluster` names as the engine's holder, asked of the live nodes in turn. */
async function engineHolder(nodes, get) {
  for (const node of nodes.filter((n) => n.child.running())) {
    try {
      const view = await get(node.url)('/cluster');
      if (view.engine.holder) return nodes.find((n) => n.id === view.engine.holder) ?? null;
    } catch {
      // this node does not answer: ask the next
    }
  }
  return null;
}

/** Seconds from `since` until a live node says the engine runs there (bounded: 120 s). */
async function engineFailover(nodes, get, since) {
  const end = since + 120_000;
  while (Date.now() < end) {
    for (const node of nodes.filter((n) => n.child.running())) {
      const here = await get(node.url)('/cluster').then(
        (v) => v.engine.here === true,
        () => false,
      );
      if (here) return { node, seconds: Math.round((Date.now() - since) / 100) / 10 };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('no node took over the rollout engine within 120 s of the engine node being killed');
}

/**
 * Watches the rollout through nginx until it ends or its budget passes; with `kills`, SIGKILLs
 * the engine node once the second phase runs, and another node once the last phase runs (while
 * at least two are alive, so one is left).
 * @param {{ api: import('@flotilla/fleet-simulator').ServerHandle, nodes: import('./nodes.mjs').ServerNode[],
 *   get: (base: string) => (path: string) => Promise<any>, devices: number,
 *   deviceChild: import('./processes.mjs').Child, rolloutId: string, kills: boolean, log: (l: string) => void }} o
 */
export async function watchRollout(o) {
  const budgetMs = 300_000 + o.devices * 2000;
  const end = Date.now() + budgetMs;
  /** @type {{ node: string, role: string }[]} */
  const killed = [];
  /** @type {number | null} */
  let engineFailoverSeconds = null;
  let last = '';
  for (;;) {
    if (!o.deviceChild.running()) throw new Error(`flotilla-sim exited: ${o.deviceChild.logTail()}`);
    let view;
    try {
      view = await o.api.rollout(o.rolloutId);
    } catch (err) {
      // A request in flight to a node as it is killed: asked again (the loop's budget bounds it).
      if (Date.now() > end) throw err;
      o.log(`rollout state not read (${err.message}); again`);
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    const phase = view.phases[view.currentPhase];
    const line = `rollout ${view.status}, phase ${view.currentPhase + 1}/${view.phases.length} ${phase?.name ?? ''}: ${view.totals.healthy} healthy, ${view.totals.inFlight} in flight, ${view.totals.failed} failed of ${view.totals.devices}`;
    if (line !== last) o.log(line);
    last = line;
    if (TERMINAL.has(view.status)) return { view, killed, engineFailoverSeconds };
    if (Date.now() > end) {
      o.log(`the rollout did not end within ${Math.round(budgetMs / 1000)} s`);
      return { view, killed, engineFailoverSeconds };
    }
    const alive = o.nodes.filter((n) => n.child.running());
    if (o.kills && killed.length === 0 && view.currentPhase >= 1) {
      const engine = await engineHolder(o.nodes, o.get);
      if (!engine) {
        // Between two leases nobody holds it: asked again on the next round (the budget bounds it).
        o.log('GET /api/v1/cluster names no live node as the rollout engine holder yet');
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const since = Date.now();
      await engine.child.kill('SIGKILL');
      killed.push({ node: engine.id, role: 'engine' });
      o.log(`SIGKILLed ${engine.id}, the rollout engine's node`);
      const next = await engineFailover(o.nodes, o.get, since);
      engineFailoverSeconds = next.seconds;
      o.log(`${next.node.id} runs the rollout engine ${next.seconds} s after the kill`);
    } else if (o.kills && killed.length === 1 && view.currentPhase >= 2 && alive.length >= 2) {
      const engine = await engineHolder(o.nodes, o.get);
      const victim = alive.find((n) => n !== engine);
      if (victim) {
        await victim.child.kill('SIGKILL');
        killed.push({ node: victim.id, role: 'api+mqtt' });
        o.log(`SIGKILLed ${victim.id} (API and MQTT, not the engine); its devices reconnect through nginx`);
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
